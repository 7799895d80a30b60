"""The web app and the public pages in headless Chromium against the running stack."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
from playwright.sync_api import Browser, expect

from chassis.disclaimer import disclaimer_for
from testbed.images import photo
from testbed.processes import Stack
from tests.web.conftest import (
    DESKTOP,
    PHONE,
    RETENTION_DAYS,
    Watch,
    guarded_context,
    screenshot,
    watched,
)

pytestmark = pytest.mark.integration

PAGES = ("/privacy", "/terms", "/ai-disclaimer", "/account/delete")
LANGUAGES = ("en", "ko", "ja")


@pytest.mark.parametrize(
    "case",
    [("phone", PHONE, "en"), ("desktop", DESKTOP, "en"), ("phone-ko", PHONE, "ko")],
    ids=lambda case: case[0],
)
def test_an_anonymous_snap_shows_the_ideas_and_the_thumbnail(
    web_stack: Stack, browser: Browser, watch: Watch, case: tuple[str, dict[str, int], str]
) -> None:
    size, viewport, language = case
    context = guarded_context(browser, watch, viewport=viewport)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_stack.url)
    page = watched(context.new_page(), watch)
    page.goto(f"{web_stack.url}/")
    expect(page.get_by_label("Language")).to_be_enabled()

    page.get_by_label("Choose or drop a photo").set_input_files(
        {"name": "beach.jpg", "mimeType": "image/jpeg", "buffer": photo(1600, 1200)}
    )
    page.get_by_label("Template").select_option("social_post")
    page.get_by_label("Tone").select_option("witty")
    page.get_by_label("Language").select_option(language)
    page.get_by_role("button", name="Snap").click()

    ideas = page.locator("#ideas > li")
    expect(ideas).to_have_count(3)
    expect(page.locator("#disclaimer")).to_have_text(disclaimer_for(language).statement)
    thumbnail = page.get_by_alt_text("Thumbnail of the stored photo")
    expect(thumbnail).to_have_attribute("src", re.compile(r"^/v1/uploads/[0-9a-f]{32}/thumbnail$"))
    assert thumbnail.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    expect(page.locator("#meta")).to_contain_text("offline provider")

    first_title = ideas.first.locator("h3").inner_text()
    ideas.first.get_by_role("button", name=re.compile("^Copy")).click()
    expect(page.get_by_role("status").first).to_contain_text(f"Copied “{first_title}”")
    assert page.evaluate("navigator.clipboard.readText()").startswith(first_title)
    screenshot(page, f"snap-{size}")
    context.close()


def test_an_oversized_photo_and_a_text_file_get_their_messages(
    web_stack: Stack, browser: Browser, watch: Watch
) -> None:
    context = guarded_context(browser, watch, viewport=PHONE)
    page = watched(context.new_page(), watch, expected_errors=("status of 415",))
    page.goto(f"{web_stack.url}/")
    expect(page.get_by_label("Template")).to_be_enabled()
    chooser = page.get_by_label("Choose or drop a photo")
    alert = page.get_by_role("alert")

    big = photo(64, 64) + b"\0" * (10 * 1024 * 1024 + 1)
    chooser.set_input_files({"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": big})
    page.get_by_role("button", name="Snap").click()
    expect(alert).to_have_text(
        "This photo is too large. Photos can be up to 10 MB; choose a smaller one."
    )

    chooser.set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"shopping list\n"}
    )
    page.get_by_role("button", name="Snap").click()
    expect(alert).to_have_attribute("data-code", "unsupported_media_type")
    expect(alert).to_contain_text("not a photo IdeaSnap can read")
    expect(page.locator("#ideas > li")).to_have_count(0)
    screenshot(page, "error-phone")
    context.close()


def test_the_public_pages_in_three_languages_state_the_running_configuration(
    web_stack: Stack, browser: Browser, watch: Watch
) -> None:
    context = guarded_context(browser, watch, viewport=DESKTOP)
    page = watched(context.new_page(), watch)
    links: set[str] = set()
    for language in LANGUAGES:
        for path in PAGES:
            response = page.goto(f"{web_stack.url}{path}?lang={language}")
            assert response is not None
            assert response.status == 200
            assert page.locator("html").get_attribute("lang") == language
            assert response.headers["content-language"] == language
            if path == "/privacy":
                expect(page.locator("#retention")).to_contain_text(RETENTION_DAYS)
            if path in ("/privacy", "/ai-disclaimer"):
                provider = page.locator("#provider")
                expect(provider).not_to_contain_text("Gemini")
                expect(provider).to_contain_text("IdeaSnap")
            if path == "/ai-disclaimer":
                expect(page.locator("#statement")).to_have_text(disclaimer_for(language).statement)
            for href in page.locator("a[href]").evaluate_all("els => els.map(e => e.href)"):
                links.add(urljoin(page.url, href).split("#")[0])
        if language == "en":
            screenshot(page, "account-delete-desktop")
    page.goto(f"{web_stack.url}/privacy?lang=ja")
    page.set_viewport_size(PHONE)
    screenshot(page, "privacy-ja-phone")

    assert f"{web_stack.url}/privacy?lang=ko" in links
    for link in sorted(links):
        assert link.startswith(web_stack.url), link
        answer = page.request.get(link)
        assert answer.status == 200, link
    context.close()


def test_the_page_language_follows_accept_language(
    web_stack: Stack, browser: Browser, watch: Watch
) -> None:
    context = guarded_context(browser, watch, extra_http_headers={"Accept-Language": "ja,en;q=0.5"})
    page = watched(context.new_page(), watch)
    page.goto(f"{web_stack.url}/ai-disclaimer")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator("h1")).to_have_text(disclaimer_for("ja").title)
    context.close()


def test_the_event_stream_reader_splits_events_across_chunks_and_skips_heartbeats(
    web_stack: Stack, browser: Browser, watch: Watch
) -> None:
    context = guarded_context(browser, watch)
    page = watched(context.new_page(), watch)
    page.goto(f"{web_stack.url}/")
    chunks = [
        ': heartbeat\n\nevent: upload\ndata: {"id": "u1"',
        '}\n\nevent: idea\ndata: {"title": "One", "body": "b", "hashtags": []}\r\n\r\n: hb\n',
        '\nevent: done\ndata: {"cached": false,\ndata:  "provider": "local"}\n\n',
    ]
    events = page.evaluate(
        """async (chunks) => {
            const { readEvents } = await import("/assets/sse.js");
            const encoder = new TextEncoder();
            const body = new ReadableStream({
                start(controller) {
                    for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
                    controller.close();
                },
            });
            const seen = [];
            for await (const event of readEvents(body)) seen.push(event);
            return seen;
        }""",
        chunks,
    )

    assert events == [
        {"event": "upload", "data": {"id": "u1"}},
        {"event": "idea", "data": {"title": "One", "body": "b", "hashtags": []}},
        {"event": "done", "data": {"cached": False, "provider": "local"}},
    ]
    context.close()


def test_limit_messages_say_when_the_limit_resets(
    web_stack: Stack, browser: Browser, watch: Watch
) -> None:
    context = guarded_context(browser, watch)
    page = watched(context.new_page(), watch)
    page.goto(f"{web_stack.url}/")
    said = page.evaluate(
        """async () => {
            const { ApiFailure, explain } = await import("/assets/messages.js");
            const say = (code, wait) =>
                explain(new ApiFailure(429, code, "", { retryAfter: wait }));
            return {
                soon: say("rate_limited", 12),
                later: say("quota_exceeded", 7200),
                down: explain(new ApiFailure(503, "upstream_unavailable", "", { retryAfter: 30 })),
            };
        }"""
    )

    assert said["soon"] == "You are snapping faster than allowed. Try again in 12 seconds."
    assert re.fullmatch(
        r"You have used all of today's ideas\. You can snap again at \d{1,2}:\d\d(\s?[AP]M)? "
        r"\(in about 2 hours\)\.",
        said["later"],
    )
    assert said["down"].startswith("IdeaSnap cannot write ideas right now. Nothing was kept")
    assert "in 30 seconds" in said["down"]
    context.close()
