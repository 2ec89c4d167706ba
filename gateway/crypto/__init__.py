"""The gateway side of domestic cryptography (国产密码), on top of `keys/`:

- `signing.py`    — the gateway's SM2 signing keys and the RFC 9421 response-signing middleware
- `routes.py`     — `GET /keys/sm2`, the gateway's public signing keys
- `models.py`     — `department_key`: each department's registered SM2 public key
- `service.py`    — register / list / retire department keys, and the per-worker key directory
- `encryption.py` — the policy engine's encrypt action: compact SM2-SM4-GCM field values
- `demo.py`       — the demo's `hrss` key pair
- `cli.py`        — `shuqiao keys …`, `shuqiao verify-response`, `shuqiao decrypt-field`

See docs/crypto.md.
"""
