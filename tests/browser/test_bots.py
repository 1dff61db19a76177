"""Bots on the built-in page in a real Chromium: a bot friend is marked with a "bot" badge in
the conversation list and "bot" under its name, and what it sends through
``POST /bot/message`` appears in the chat."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from sandcat import control
from sandcat.server import Running
from tests.browser.test_web_chat import conversation, signed_in
from tests.client import Api, User, apply_friend, until

pytestmark = pytest.mark.embedded_only


@pytest.mark.timeout(60)
async def test_a_bot_friend_has_a_badge_and_its_messages_show(
    browser: Browser, server: Running, api: Api, tmp_path: Path
) -> None:
    bot = await control.request(
        tmp_path / "data", "bot.create", {"name": "helper", "auto_accept": True}
    )
    alice = await api.new_user("alice", "alice@example.com")
    human = await api.new_user("bob", "bob@example.com")
    await apply_friend(api, alice, User(id=bot["id"], email="", password=""))
    await apply_friend(api, human, alice)

    async def accepted() -> bool:
        _, changes = await api.call("GET", f"/api/friend/{alice.id}/0", token=alice.token)
        return any(f["friend_id"] == bot["id"] for f in changes["friends"])

    await until(accepted, 15, "the bot accepted alice")
    _, request = await api.call("GET", f"/api/friend/{alice.id}/apply", token=alice.token)
    await api.call(
        "PUT",
        "/api/friend/agree",
        token=alice.token,
        json={"fs_id": request[0]["fs_id"], "resp_msg": None, "resp_remark": None},
    )

    page = await signed_in(browser, server, alice)
    helper = conversation(page, "helper")
    await expect(helper.locator(".bot-badge")).to_have_text("bot")
    # A person is not marked.
    await expect(conversation(page, "bob")).to_be_visible()
    await expect(conversation(page, "bob").locator(".bot-badge")).to_have_count(0)

    await api.call(
        "POST",
        "/api/bot/message",
        token=bot["token"],
        json={"receiver_id": alice.id, "content": "beep from the bot"},
    )
    await helper.click()
    await expect(page.locator("#pane-sub")).to_have_text("bot")
    await expect(page.locator(".bubble", has_text="beep from the bot")).to_be_visible()
