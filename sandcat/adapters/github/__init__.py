"""GitHub's OAuth token endpoint and REST API (aiohttp client), for GitHub login."""
