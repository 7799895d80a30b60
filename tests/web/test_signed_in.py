"""The signed-in web app in headless Chromium, with the Firebase Auth emulator.

Runs against the documented API of accounts (the gateway verifying ID tokens), the
library (history, drafts and their versions, /v1/me) and streaming: sign up, snap, find
the snap in the history, edit a draft that saves itself, restore a version, meet a
conflict made from a second browser context, and delete the account.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from testbed.images import photo
from testbed.processes import Stack, start_stack
from tests.support.firebase_emulator import API_KEY, AuthEmulator
from tests.web.conftest import DESKTOP, PHONE, Watch, guarded_context, screenshot, watched

pytestmark = pytest.mark.integration
PASSWORD = "correct-horse-9"


@pytest.fixture(scope="module")
def signed_in_stack(
    tmp_path_factory: pytest.TempPathFactory, auth_emulator: AuthEmulator
) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("web-signed-in"),
        workers=1,
        common_env=auth_emulator.env(),
        gateway_env={"FIREBASE_WEB_API_KEY": API_KEY, "RATE_LIMIT_AI": "100/minute"},
    )
    try:
        yield stack
    finally:
        stack.stop()


def sign_in(page: Page, email: str, *, new: bool) -> None:
    page.get_by_role("button", name="Sign in").first.click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    if new:
        page.get_by_role("button", name="Create account").click()
    else:
        page.locator("#sign-in-button").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_sign_up_snap_history_draft_restore_conflict_and_delete(
    signed_in_stack: Stack, auth_emulator: AuthEmulator, browser: Browser, watch: Watch
) -> None:
    email = f"web-{uuid.uuid4().hex[:8]}@example.com"
    context = guarded_context(browser, watch, viewport=PHONE)
    # The conflict below is a 412 the page answers itself (Chromium logs the status).
    page = watched(context.new_page(), watch, expected_errors=("status of 412",))
    page.goto(f"{signed_in_stack.url}/")
    sign_in(page, email, new=True)
    uid = auth_emulator.sign_in(email, PASSWORD)["localId"]

    page.get_by_label("Choose or drop a photo").set_input_files(
        {"name": "desk.jpg", "mimeType": "image/jpeg", "buffer": photo(1200, 900)}
    )
    page.get_by_role("button", name="Snap").click()
    expect(page.locator("#ideas > li")).to_have_count(3)
    first_title = page.locator("#ideas > li h3").first.inner_text()

    page.get_by_role("button", name="History").click()
    entry = page.locator("#history > li").first
    expect(entry).to_contain_text(first_title)
    screenshot(page, "history-phone")

    entry.get_by_role("button", name=f"Edit “{first_title}”").click()
    expect(page.locator("#draft-status")).to_have_text("Saved.")
    page.get_by_label("Title").fill("My own title")
    expect(page.locator("#draft-status")).to_have_text("Saved.")
    expect(page.locator("#revisions > li")).to_have_count(2)
    page.get_by_role("button", name=re.compile(r"^Restore version 1$")).click()
    expect(page.get_by_label("Title")).to_have_value(first_title)

    # The same draft changed from a second device: the first one's next save is refused.
    other = guarded_context(browser, watch, viewport=DESKTOP)
    second = watched(other.new_page(), watch)
    second.goto(f"{signed_in_stack.url}/")
    sign_in(second, email, new=False)
    draft_id = page.evaluate("document.getElementById('revisions').dataset.draft || ''")
    token = auth_emulator.sign_in(email, PASSWORD)["idToken"]
    current = second.request.get(
        f"{signed_in_stack.url}/v1/drafts/{draft_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert current.status == 200
    changed = second.request.patch(
        f"{signed_in_stack.url}/v1/drafts/{draft_id}",
        headers={"Authorization": f"Bearer {token}", "If-Match": current.headers["etag"]},
        data={"title": "Changed on the desktop"},
    )
    assert changed.status == 200
    other.close()

    page.get_by_label("Text").fill("Changed here after the other device")
    expect(page.get_by_role("alert")).to_contain_text("changed on another device")
    screenshot(page, "draft-conflict-phone")
    page.get_by_role("button", name="Show their version").click()
    expect(page.get_by_label("Title")).to_have_value("Changed on the desktop")

    page.get_by_role("button", name="Account").click()
    expect(page.locator("#account-facts")).to_contain_text("free")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_role("status").first).to_contain_text("were deleted")
    assert auth_emulator.lookup(uid) is None
    context.close()
