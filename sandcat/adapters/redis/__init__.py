"""Redis adapters (redis-py asyncio): sequence counters with Lua, e-mail codes, the group
membership cache, presence, the gateway registry and the push bus.

Every adapter takes a ``redis.asyncio.Redis`` created by :func:`connect` (bytes replies).
"""
