"""Server-side conversations on the built-in page in a real Chromium: the page connects
with ``?v=2``, so a read or a flag changed on another device (here: over HTTP) shows at
once (the unread badge goes, a muted mark appears), and its own Pin toggle is stored on the
server; a conversation it hides comes back with the next message, sent or received
(docs/protocol.md, "Conversations")."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from sandcat.server import Running
from tests.browser.test_web_chat import conversation, send_text, signed_in
from tests.client import Api, Socket, User, alice_and_bob, befriend, until

pytestmark = pytest.mark.embedded_only


@pytest.mark.timeout(60)
async def test_reads_and_flags_from_another_device_show_and_pin_is_stored(
    browser: Browser, server: Running, api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    b = await Socket.connect(session, bob)
    await b.send(send_id=bob.id, receiver_id=alice.id, local_id="hello", content=b"hello alice")
    await b.recv_until(lambda m: m["msg_type"] == 24)

    page = await signed_in(browser, server, alice)
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


async def _hidden_on_server(api: Api, user: User, peer: str) -> bool:
    _, body = await api.call("GET", "/api/conversation", token=user.token)
    return bool({c["id"]: c for c in body["conversations"]}[peer]["hidden"])


@pytest.mark.timeout(60)
async def test_a_hidden_conversation_comes_back_with_the_next_message(
    browser: Browser, server: Running, api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    carol = await api.new_user("carol", "carol@example.com")
    await befriend(api, alice, carol)
    b = await Socket.connect(session, bob)
    c = await Socket.connect(session, carol)
    for sock, sender, text in ((b, bob, "hello alice"), (c, carol, "hi from carol")):
        await sock.send(
            send_id=sender.id, receiver_id=alice.id, local_id=text, content=text.encode()
        )
        await sock.recv_until(lambda m: m["msg_type"] == 24)

    page = await signed_in(browser, server, alice)
    bob_row, carol_row = conversation(page, "bob"), conversation(page, "carol")
    hide = page.locator(".conv-action.hidden")

    # Hidden, Alice writes in it anyway: it is back, on the server and on the page.
    await bob_row.click()
    await hide.click()
    await expect(hide).to_have_text("Unhide")
    assert await _hidden_on_server(api, alice, bob.id)
    await send_text(page, "one more thing")
    await expect(hide).to_have_text("Hide")
    await carol_row.click()
    await expect(bob_row).to_be_visible()
    assert not await _hidden_on_server(api, alice, bob.id)

    # Hidden again, it leaves the list once another conversation is open, until Bob writes.
    await bob_row.click()
    await hide.click()
    await expect(hide).to_have_text("Unhide")
    await carol_row.click()
    await expect(bob_row).to_have_count(0)
    await b.send(send_id=bob.id, receiver_id=alice.id, local_id="back", content=b"back")
    await b.recv_until(lambda m: m["msg_type"] == 24)
    await expect(bob_row).to_be_visible()
    await bob_row.click()
    await expect(hide).to_have_text("Hide")

    async def shown() -> bool:
        return not await _hidden_on_server(api, alice, bob.id)

    await until(shown, what="the conversation back on the server after Bob's message")
    for sock in (b, c):
        await sock.close()
