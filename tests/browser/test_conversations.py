"""Server-side conversations on the built-in page in a real Chromium: the page connects
with ``?v=2``, so a read or a flag changed on another device (here: over HTTP) shows at
once (the unread badge goes, a muted mark appears), and its own Pin toggle is stored on the
server (docs/protocol.md, "Conversations")."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from sandcat.server import Running
from tests.browser.test_web_chat import conversation, open_page
from tests.client import Api, Socket, alice_and_bob, until

pytestmark = pytest.mark.embedded_only


@pytest.mark.timeout(60)
async def test_reads_and_flags_from_another_device_show_and_pin_is_stored(
    browser: Browser, server: Running, api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    b = await Socket.connect(session, bob)
    await b.send(send_id=bob.id, receiver_id=alice.id, local_id="hello", content=b"hello alice")
    await b.recv_until(lambda m: m["msg_type"] == 24)

    page = await open_page(browser, server)
    await page.fill("#login-email", alice.email)
    await page.fill("#login-password", alice.password)
    await page.click("#login-submit")
    await expect(page.locator("#connection")).to_have_text("online")
    row = conversation(page, "bob")
    await expect(row.locator(".badge")).to_have_text("1")

    # Alice's other device reads the conversation, then mutes it.
    await api.call("POST", f"/api/conversation/{bob.id}/read", token=alice.token)
    await expect(row.locator(".badge")).to_have_count(0)
    await api.call("PUT", f"/api/conversation/{bob.id}", token=alice.token, json={"muted": True})
    await expect(row.locator(".mute-mark")).to_be_visible()

    await row.click()
    await expect(page.locator(".conv-action.muted")).to_have_text("Unmute")
    await page.click(".conv-action.pinned")
    await expect(row.locator(".pin-mark")).to_be_visible()
    await expect(page.locator(".conv-action.pinned")).to_have_text("Unpin")

    async def pinned() -> bool:
        _, body = await api.call("GET", "/api/conversation", token=alice.token)
        convs: dict[str, Any] = {c["id"]: c for c in body["conversations"]}
        return bool(convs[bob.id]["pinned"] and convs[bob.id]["muted"])

    await until(pinned, what="the page's pin stored on the server")
    await b.close()
