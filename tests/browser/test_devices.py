"""Devices on the built-in page in a real Chromium (docs/protocol.md, "Devices"): the
Devices dialog lists the user's sign-ins, logs one out remotely (that page goes back to the
sign-in form at once), and logs out everywhere else; what the user does on another device
(a group created, a remark) shows on the page through v2 events, and friend requests the
page showed are marked read."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from sandcat.server import Running
from tests.browser.test_web_chat import conversation, signed_in
from tests.client import Api, alice_and_bob, apply_friend, create_group, until

pytestmark = pytest.mark.embedded_only


async def _device_of(page: Page) -> str:
    """The device id in the page's access token (its ``did`` claim)."""
    token = await page.evaluate("JSON.parse(sessionStorage.getItem('sandcat.session')).token")
    payload = str(token).split(".")[1]
    return str(json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))["did"])


@pytest.mark.timeout(90)
async def test_devices_dialog_logs_out_one_device_and_every_other(
    browser: Browser, server: Running, api: Api, session: aiohttp.ClientSession
) -> None:
    alice, _ = await alice_and_bob(api)
    here = await signed_in(browser, server, alice)
    there = await signed_in(browser, server, alice)
    there_id = await _device_of(there)

    await here.click("#open-devices")
    rows = here.locator("#device-list .device")
    await expect(rows).to_have_count(3)  # the two pages and the API client's login
    await expect(here.locator(".device-here")).to_have_count(1)
    await expect(rows.filter(has_text="web page")).to_have_count(2)
    await here.locator(f'.device[data-id="{there_id}"] .device-logout').click()
    # The other page is signed out at once (its socket closed with 4002, refresh refused).
    await expect(there.locator("#auth")).to_be_visible()
    await expect(there.locator("#auth-error")).to_contain_text("another device")
    await expect(rows).to_have_count(2)
    # Both pages are desktops, so the second one knocked this one's socket off (4001):
    # it is still signed in, and takes the connection back.
    await here.click("#devices-dialog button[value=cancel]")
    await expect(here.locator("#chat")).to_be_visible()
    await here.click("#banner button")
    await expect(here.locator("#connection")).to_have_text("online")

    await here.click("#open-devices")
    await expect(rows).to_have_count(2)
    await here.click("#logout-others")
    await expect(rows).to_have_count(1)
    await expect(here.locator(".device-here")).to_have_count(1)
    await api.call("GET", f"/api/user/{alice.id}", token=alice.token, expect=401)
    await here.click("#devices-dialog button[value=cancel]")
    await expect(here.locator("#connection")).to_have_text("online")


@pytest.mark.timeout(90)
async def test_what_another_device_does_shows_on_the_page(
    browser: Browser, server: Running, api: Api
) -> None:
    alice, bob = await alice_and_bob(api)
    carol = await api.new_user("carol", "carol@example.com")
    page = await signed_in(browser, server, alice)
    # Alice's other device (the API client) creates a group and renames a contact.
    await create_group(api, alice, [bob.id], name="weekend plans")
    await expect(conversation(page, "weekend plans")).to_be_visible()
    await api.call(
        "PUT",
        "/api/friend/remark",
        token=alice.token,
        json={"user_id": alice.id, "friend_id": bob.id, "remark": "Bobby"},
    )
    await expect(conversation(page, "Bobby")).to_be_visible()
    # A friend request the page shows is marked read: the friend sync stops repeating it.
    request = await apply_friend(api, carol, alice)
    await expect(page.locator("#request-list .request")).to_have_count(1)

    async def read() -> bool:
        _, body = await api.call("GET", f"/api/friend/{alice.id}/0", token=alice.token)
        return request["fs_id"] not in [fs["fs_id"] for fs in body["fs"]]

    await until(read, what="the shown request is marked read")
