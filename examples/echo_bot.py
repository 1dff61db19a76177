"""An echo bot: a webhook receiver that checks each delivery's signature and answers every
text through POST /bot/message (docs/protocol.md, "Bots"). Create the bot first:

    sandcat bot create echo --webhook http://127.0.0.1:8080/ --auto-accept
    SANDCAT_API=http://127.0.0.1:50001 BOT_TOKEN=... BOT_SECRET=... python examples/echo_bot.py
"""

import hashlib
import hmac
import os
import time

from aiohttp import ClientSession, web

API, TOKEN, SECRET = os.environ["SANDCAT_API"], os.environ["BOT_TOKEN"], os.environ["BOT_SECRET"]


async def hook(request: web.Request) -> web.Response:
    raw, stamp = await request.read(), request.headers.get("X-Sandcat-Timestamp", "0")
    mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    signed = hmac.compare_digest(request.headers.get("X-Sandcat-Signature", ""), "sha256=" + mac)
    if not signed or abs(time.time() - int(stamp)) > 300:
        return web.Response(status=401)
    event = await request.json()
    if event["text"] is not None:
        chat = event["group_id"]
        to = {"group_id": chat} if chat else {"receiver_id": event["sender_id"]}
        # The delivery's server_id as local_id: a redelivered message is answered once.
        body = {**to, "content": "echo: " + event["text"], "local_id": "echo-" + event["server_id"]}
        async with ClientSession() as http:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(f"{API}/bot/message", json=body, headers=headers) as answer:
                answer.raise_for_status()
    return web.Response(status=204)


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/", hook)
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
