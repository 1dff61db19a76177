"""GitHub login on the built-in page in a real Chromium: the button, the round trip through
a local GitHub-shaped provider (tests/oauth_provider.py) back to the chat, and the errors
the page shows. Every wait is Playwright's auto-waiting, never a sleep."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from tests.browser.test_web_chat import base_url, open_page
from tests.client import Api, CodeBook
from tests.conftest import StartServer
from tests.oauth_provider import Account, Provider, github_settings, running_provider

pytestmark = pytest.mark.embedded_only


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    async with running_provider() as started:
        yield started


async def test_sign_in_with_github_round_trip(
    browser: Browser,
    start_server: StartServer,
    provider: Provider,
    session: aiohttp.ClientSession,
    codes: CodeBook,
) -> None:
    provider.account = Account(
        id=4242,
        login="octo-browser",
        name="Octo Browser",
        emails=[("octo@example.com", True, True)],
    )
    async with start_server(**github_settings(provider.port)) as server:
        page = await open_page(browser, server)
        button = page.locator("#github-login")
        await expect(button).to_be_visible()
        await button.click()
        # GitHub approved, the callback set the session: the chat is open, connected, and
        # the tokens are gone from the address bar.
        await expect(page.locator("#me-name")).to_have_text("Octo Browser")
        await expect(page.locator("#connection")).to_have_text("online")
        assert "#" not in page.url and "token" not in page.url
        assert provider.token_requests[-1]["code_verifier"]
        # A reload keeps the session (sessionStorage), like a password sign-in.
        await page.reload()
        await expect(page.locator("#me-name")).to_have_text("Octo Browser")

        # An existing account with that verified e-mail is the one signed in.
        alice = await Api(session, base_url(server), codes).new_user("Alice", "alice@example.com")
        provider.account = Account(
            id=77, login="alice-gh", name="Alice on GitHub", emails=[(alice.email, True, True)]
        )
        other = await open_page(browser, server)
        await other.locator("#github-login").click()
        await expect(other.locator("#me-name")).to_have_text("Alice")
        await other.context.close()

        # GitHub failing: the page says so in words, on the sign-in form.
        provider.fail["/user"] = 500
        failing = await open_page(browser, server)
        await failing.locator("#github-login").click()
        await expect(failing.locator("#auth-error")).to_have_text(
            "GitHub could not be reached. Please try again later."
        )
        await expect(failing.locator("#auth")).to_be_visible()
        assert "#" not in failing.url
        await failing.context.close()
        await page.context.close()


async def test_no_button_without_github_configured(
    browser: Browser, start_server: StartServer
) -> None:
    async with start_server() as server:
        page = await open_page(browser, server)
        await expect(page.locator("#login-submit")).to_be_visible()
        await page.wait_for_load_state("networkidle")
        await expect(page.locator("#github-login")).to_be_hidden()
        await page.context.close()


async def test_a_planted_landing_link_does_not_sign_the_page_in(
    browser: Browser, start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """Login CSRF: an attacker's own login answer put in a link to the page
    (``/#oauth=<JSON>``) must not sign a victim's page into the attacker's account; the
    page takes a landing only from the sign-in it began (its nonce comes back with it)."""
    async with start_server() as server:
        attacker = await Api(session, base_url(server), codes).new_user("Mallory", "m@example.com")
        answer = {
            "user": {"id": attacker.id, "name": "Mallory"},
            "token": attacker.token,
            "refresh_token": attacker.refresh_token,
            "ws_addr": attacker.ws_addr,
        }
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(base_url(server) + "/#oauth=" + quote(json.dumps(answer), safe=""))
        await expect(page.locator("#auth-error")).to_contain_text("not begun on this page")
        await expect(page.locator("#auth")).to_be_visible()
        await expect(page.locator("#me-name")).not_to_have_text("Mallory")
        assert "#" not in page.url
        assert await page.evaluate("sessionStorage.length") == 0
        await context.close()
