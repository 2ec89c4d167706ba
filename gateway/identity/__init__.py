"""Who is calling: OAuth clients, enterprises and their API keys, token issuing and checking."""
