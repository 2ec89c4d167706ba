"""The one entry point: `uvicorn asgi:app`. Settings come from SHUQIAO_* environment variables."""

from gateway.app import create_app

app = create_app()
