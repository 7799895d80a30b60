"""The IdeaSnap service chassis.

Everything a service needs that is not about uploads or ideas lives here once: typed
settings, JSON logs, traces, metrics, Sentry, the error envelope, health and outgoing
HTTP. A service builds its Flask app with :func:`chassis.app.create_service_app`.
"""
