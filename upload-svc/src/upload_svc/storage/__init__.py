"""Where uploads live: one small interface, several backends."""

from upload_svc.storage.base import ObjectNotFound, Storage, StoredObject

__all__ = ["ObjectNotFound", "Storage", "StoredObject"]
