"""The built-in web page (sandcat/web/) in a real Chromium against a real embedded server.

Two browser users go through register -> friend -> chat -> reload -> offline, reconnect and
sync -> group chat with an image and a file -> invite -> the friendship ended -> knocked off
by another login -> logged out elsewhere, checking what the page shows; the rate limit and
the JavaScript codec have tests of their own. Every wait is Playwright's auto-waiting on a
selector or an assertion, never a sleep. ``SANDCAT_SCREENSHOTS=docs/screenshots`` also saves
the README's screenshots there.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import (
    Browser,
    FilePayload,
    Locator,
    Page,
    ViewportSize,
    expect,
)

from sandcat.protocol.payloads import (
    Friend,
    FriendshipWithUser,
    GroupInfo,
    GroupInvitation,
    GroupMember,
)
from sandcat.server import Running
from tests import wire
from tests.client import Api, CodeBook, User, apply_friend, befriend
from tests.conftest import StartServer
from tests.unit.test_codec_vectors import VECTOR

pytestmark = pytest.mark.embedded_only

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 780}

expect.set_options(timeout=15_000)


def gradient_png(width: int = 240, height: int = 150) -> bytes:
    """An RGB PNG of a colour gradient: the image message (and its screenshot)."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (x * 255 // width, y * 255 // height, 210))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def keep_screenshots(shots: Path) -> None:
    """Copy the screenshots to ``$SANDCAT_SCREENSHOTS`` when it is set."""
    target = os.environ.get("SANDCAT_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / shot.name)


def base_url(server: Running) -> str:
    return f"http://127.0.0.1:{server.api_port}"


async def open_page(browser: Browser, server: Running) -> Page:
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await page.goto(base_url(server) + "/")
    return page


async def signed_in(browser: Browser, server: Running, user: User) -> Page:
    """A new page on which ``user`` signed in with the form, its socket online."""
    page = await open_page(browser, server)
    await page.fill("#login-email", user.email)
    await page.fill("#login-password", user.password)
    await page.click("#login-submit")
    await expect(page.locator("#connection")).to_have_text("online")
    return page


async def register(page: Page, codes: CodeBook, name: str, email: str, password: str) -> None:
    await page.click("#tab-register")
    await page.fill("#reg-name", name)
    await page.fill("#reg-email", email)
    await page.click("#send-code")
    # Embedded mode: the page says the code is in the server log, and that is where it is.
    await expect(page.locator("#code-hint")).to_contain_text("server log")
    await page.fill("#reg-code", await codes.wait(email))
    await page.fill("#reg-password", password)
    await page.click("#register-submit")
    await expect(page.locator("#me-name")).to_have_text(name)
    await expect(page.locator("#connection")).to_have_text("online")


async def send_text(page: Page, text: str) -> None:
    await page.fill("#text-input", text)
    await page.press("#text-input", "Enter")
    bubble = page.locator(".bubble-row.mine .bubble", has_text=text)
    status = bubble.locator(".status")
    await expect(status).to_have_text(re.compile("✓|not delivered"))
    # Acked by the server; a refusal fails with the reason the page shows.
    assert await status.inner_text() == "✓", await bubble.inner_text()


def conversation(page: Page, title: str) -> Locator:
    return page.locator(".conversation", has=page.locator(".conv-title", has_text=title))


async def test_codec_matches_the_reference_vectors(browser: Browser, server: Running) -> None:
    """sandcat/web/bincode.js against the vectors of tests/unit/test_codec_vectors.py and
    the reference codec's payload encoders."""
    page = await open_page(browser, server)
    friend_request = FriendshipWithUser(
        "fs1", "u1", "Ann", "a.png", "f", 30, None, 0, "hi é", "search", 5, "acc", None, "a@x"
    )
    friend = Friend("fs1", "u2", "acc", "Bob", "", "m", 2, "here", 1, None, None, "qr", "sig", 6, 7)
    info = GroupInfo("g1", "u1", "Team", "", "d", "a", 8, 9)
    member = GroupMember(3, "g1", "u2", "Bob", "", 10, "north", "m", None, "", 1)
    invitation = GroupInvitation(info, [member])
    result = await page.evaluate(
        """async ([vector, fsHex, friendHex, invitationHex]) => {
            const bc = await import("/web/bincode.js");
            const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
            const bytes = (h) => Uint8Array.from(h.match(/../g).map((x) => parseInt(x, 16)));
            const msg = bc.newMsg({send_id: "a", receiver_id: "bc", create_time: 1,
                send_time: 2, seq: 3, content_type: 1, content: new Uint8Array([0x68, 0x69]),
                is_read: true, platform: 1, related_msg_id: "r", send_seq: -1});
            const decoded = bc.decodeMsg(bytes(vector));
            let trailing = "";
            try { bc.decodeMsg(bytes(vector + "00")); } catch (e) { trailing = e.message; }
            return {
                encoded: hex(bc.encodeMsg(msg)),
                decoded: {...decoded, content: hex(decoded.content)},
                empty: bc.encodeMsg(bc.newMsg()).length,
                trailing,
                read: hex(bc.encodeRead([5, 7], "u")),
                request: bc.decodeFriendRequest(bytes(fsHex)),
                friend: bc.decodeFriend(bytes(friendHex)),
                invitation: bc.decodeGroupInvitation(bytes(invitationHex)),
            };
        }""",
        [
            VECTOR.hex(),
            friend_request.encode().hex(),
            friend.encode().hex(),
            invitation.encode().hex(),
        ],
    )
    assert result["encoded"] == VECTOR.hex()
    decoded = result["decoded"]
    assert (decoded["send_id"], decoded["receiver_id"], decoded["seq"]) == ("a", "bc", 3)
    assert (decoded["content"], decoded["is_read"], decoded["send_seq"]) == ("6869", True, -1)
    assert decoded["related_msg_id"] == "r"
    assert result["empty"] == 64 + 32 + 12 + 1 + 1
    assert "trailing" in result["trailing"]
    assert result["read"] == wire.read_payload([5, 7], "u").hex()
    assert result["request"]["apply_msg"] == "hi é" and result["request"]["region"] is None
    assert result["friend"]["name"] == "Bob" and result["friend"]["update_time"] == 7
    assert result["invitation"]["info"]["name"] == "Team"
    [decoded_member] = result["invitation"]["members"]
    assert decoded_member["group_name"] == "Bob" and decoded_member["region"] == "north"
    assert decoded_member["remark"] is None and decoded_member["role"] == 1


@pytest.mark.timeout(120)  # 10-20 s here; room for a machine busy with other suites
async def test_two_users_register_befriend_chat_sync_and_group(
    browser: Browser, server: Running, codes: CodeBook, api: Api, tmp_path: Path
) -> None:
    alice = await open_page(browser, server)
    bob = await open_page(browser, server)
    await register(alice, codes, "Alice", "alice@example.com", "alice-pw")
    await register(bob, codes, "Bob", "bob@example.com", "bob-pw")

    # Alice finds Bob by e-mail and asks; Bob sees the request live and accepts.
    await alice.click("#open-add-friend")
    await alice.fill("#search-input", "bob@example.com")
    await alice.click("#search-button")
    await alice.click("#apply-friend")
    await expect(alice.locator("#apply-friend")).to_have_text("Request sent")
    await alice.click("#add-friend-dialog button[value=cancel]")
    request = bob.locator(".request", has_text="Alice")
    await expect(request).to_contain_text("Hi, I am Alice")
    await request.locator(".accept").click()
    await expect(bob.locator("#requests")).to_be_hidden()
    await expect(conversation(alice, "Bob")).to_contain_text("now friends")  # type 11, live

    # One-to-one, live both ways; the unread count shows until Bob opens the conversation.
    await conversation(alice, "Bob").click()
    await send_text(alice, "Hello Bob")
    await expect(conversation(bob, "Alice").locator(".badge")).to_have_text("1")
    await conversation(bob, "Alice").click()
    await expect(bob.locator(".bubble", has_text="Hello Bob")).to_be_visible()
    await expect(conversation(bob, "Alice").locator(".badge")).to_have_count(0)
    await send_text(bob, "Hi Alice")  # acked in frame order: the Read before it is stored
    await expect(alice.locator(".bubble", has_text="Hi Alice")).to_be_visible()

    # A reload keeps the tab's session and rebuilds the history from the server's pull,
    # with the read state the server kept.
    await bob.reload()
    await expect(bob.locator("#connection")).to_have_text("online")
    await expect(conversation(bob, "Alice")).to_contain_text("You: Hi Alice")
    await expect(conversation(bob, "Alice").locator(".badge")).to_have_count(0)
    await conversation(bob, "Alice").click()
    await expect(bob.locator(".bubble", has_text="Hello Bob")).to_be_visible()

    # Bob goes offline; what Alice sends meanwhile arrives by the pull after the reconnect.
    await bob.context.set_offline(True)
    await expect(bob.locator("#connection")).to_have_text("offline")
    await expect(bob.locator("#banner")).to_contain_text("You are offline")
    await send_text(alice, "Sent while you were away")
    await send_text(alice, "And a second one")
    await expect(bob.locator(".bubble", has_text="And a second one")).to_have_count(0)
    await bob.fill("#text-input", "Written offline")
    await bob.press("#text-input", "Enter")
    queued = bob.locator(".bubble", has_text="Written offline").locator(".status")
    await expect(queued).to_have_text("waiting for connection")
    await bob.context.set_offline(False)
    await expect(bob.locator("#connection")).to_have_text("online")
    await expect(bob.locator(".bubble", has_text="Sent while you were away")).to_be_visible()
    await expect(bob.locator(".bubble", has_text="And a second one")).to_be_visible()
    await expect(queued).to_have_text("✓")
    await expect(alice.locator(".bubble", has_text="Written offline")).to_be_visible()

    # A group: Alice creates it with Bob, both talk, Alice sends an image.
    await alice.click("#open-new-group")
    await alice.fill("#group-name", "Weekend")
    await alice.locator("#group-members label", has_text="Bob").locator("input").check()
    await alice.click("#create-group")
    await expect(alice.locator("#pane-name")).to_have_text("Weekend")
    await expect(alice.locator(".notice", has_text="You created the group")).to_be_visible()
    await send_text(alice, "Group hello")
    await conversation(bob, "Weekend").click()
    await expect(bob.locator(".notice", has_text="Alice created the group")).to_be_visible()
    hello = bob.locator(".bubble", has_text="Group hello")
    await expect(hello.locator(".sender")).to_have_text("Alice")
    await send_text(bob, "Group reply")
    await expect(alice.locator(".bubble", has_text="Group reply").locator(".sender")).to_have_text(
        "Bob"
    )
    picture: FilePayload = {"name": "sunset.png", "mimeType": "image/png", "buffer": gradient_png()}
    await alice.set_input_files("#file-input", files=[picture])
    image = bob.locator(".bubble img.image")
    await expect(image).to_be_visible()
    assert await image.evaluate("img => img.complete && img.naturalWidth === 240")
    notes: FilePayload = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"bring snacks"}
    await alice.set_input_files("#file-input", files=[notes])
    attachment = bob.locator("a.file", has_text="notes.txt")
    await expect(attachment).to_contain_text("12 B")
    assert await attachment.evaluate("a => fetch(a.href).then(r => r.text())") == "bring snacks"

    # A request Alice declines disappears; a new friend of hers is invited to the group, and
    # both pages say so.
    alice_user = User(id="", email="alice@example.com", password="alice-pw")
    alice_user.id = (await api.login(alice_user))["user"]["id"]
    carol = await api.new_user("Carol", "carol@example.com")
    await apply_friend(api, carol, alice_user, apply_msg="Carol here", path="/friend")
    await alice.locator(".request", has_text="Carol here").locator(".deny").click()
    await expect(alice.locator("#requests")).to_be_hidden()
    dan = await api.new_user("Dan", "dan@example.com")
    await befriend(api, alice_user, dan)
    await expect(conversation(alice, "Dan")).to_be_visible()
    await alice.click("#open-invite")
    await alice.locator("#invite-members label", has_text="Dan").locator("input").check()
    await alice.click("#invite-button")
    await expect(alice.locator(".notice", has_text="You invited a new member")).to_be_visible()
    await expect(alice.locator("#pane-sub")).to_have_text("3 members")
    await expect(bob.locator(".notice", has_text="Alice invited a new member")).to_be_visible()

    shots = tmp_path / "screenshots"
    shots.mkdir()
    await alice.screenshot(path=str(shots / "desktop.png"))
    await bob.set_viewport_size(PHONE)
    await expect(bob.locator("#back")).to_be_visible()
    await bob.screenshot(path=str(shots / "phone.png"))
    await bob.click("#back")
    await expect(conversation(bob, "Weekend")).to_be_visible()
    await bob.screenshot(path=str(shots / "phone-list.png"))
    keep_screenshots(shots)

    # Bob ends the friendship (over HTTP): Alice's page says so, and refuses her next message
    # with the gateway's reason in words.
    bob_user = User(id="", email="bob@example.com", password="bob-pw")
    bob_user.id = (await api.login(bob_user))["user"]["id"]
    _, contacts = await api.call("GET", f"/friend/{bob_user.id}/0", token=bob_user.token)
    friendship = contacts["friends"][0]
    await api.call(
        "DELETE",
        "/friend",
        token=bob_user.token,
        json={
            "user_id": bob_user.id,
            "friend_id": friendship["friend_id"],
            "fs_id": friendship["fs_id"],
        },
    )
    await conversation(alice, "Bob").click()
    await expect(alice.locator(".notice", has_text="removed the friendship")).to_be_visible()
    await alice.fill("#text-input", "Still there?")
    await alice.press("#text-input", "Enter")
    refused = alice.locator(".bubble.failed", has_text="Still there?")
    await expect(refused.locator(".bubble-error")).to_contain_text("not friends")
    await expect(alice.locator("#toast")).to_contain_text("Send a friend request first")

    # Bob signs in on another page: the first one is knocked off (close code 4001).
    other = await open_page(browser, server)
    await other.fill("#login-email", "bob@example.com")
    await other.fill("#login-password", "bob-pw")
    await other.click("#login-submit")
    await expect(other.locator("#connection")).to_have_text("online")
    await expect(bob.locator("#banner")).to_contain_text("signed in on another page")
    await expect(bob.locator("#connection")).to_have_text("offline")

    # Bob logs out elsewhere (over HTTP): the open page gets 4002, cannot renew its token, and
    # goes back to the sign-in form saying why.
    await api.call("DELETE", f"/user/logout/{bob_user.id}", token=bob_user.token)
    await expect(other.locator("#auth")).to_be_visible()
    await expect(other.locator("#auth-error")).to_contain_text("Your session has ended")


async def test_rate_limit_is_said_in_words(
    browser: Browser, start_server: StartServer, codes: CodeBook, session: aiohttp.ClientSession
) -> None:
    async with start_server(limits__messages_per_second=1, limits__messages_burst=1) as server:
        api = Api(session, base_url(server), codes)
        ann = await api.new_user("Ann", "ann@example.com")
        ben = await api.new_user("Ben", "ben@example.com")
        await befriend(api, ann, ben)
        page = await signed_in(browser, server, ann)
        await conversation(page, "Ben").click()
        for text in ("one", "two", "three"):
            await page.fill("#text-input", text)
            await page.press("#text-input", "Enter")
        await expect(page.locator(".bubble.failed .bubble-error").first).to_contain_text(
            "sending too fast"
        )
