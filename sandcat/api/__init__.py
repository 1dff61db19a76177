"""The HTTP edge: aiohttp routes that parse, authenticate and call services."""
