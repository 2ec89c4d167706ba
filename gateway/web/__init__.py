"""The gateway's own web pages: sign-in sessions (gateway.web.session)."""
