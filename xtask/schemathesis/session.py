"""Schemathesis hooks for ticketing, loaded through `hooks` in schemathesis.toml.

Operations that need a signed-in user name the `session` security scheme: the `session`
cookie that sign-up sets. This signs up a user of its own (a new email every run, so the run
never depends on an account that exists already) and sends its cookie with every request.
"""

import uuid

import requests
import schemathesis

# Sessions last a day; one run needs one sign-up.
REFRESH_SECONDS = 3600


@schemathesis.auth(refresh_interval=REFRESH_SECONDS, retry_on=[])
class Session:
    """The `session` cookie of a user signed up for this run."""

    def get(self, case, context):
        url = context.operation.schema.get_base_url().rstrip("/") + "/api/users/signup"
        credentials = {
            "email": f"schemathesis-{uuid.uuid4().hex}@example.com",
            "password": uuid.uuid4().hex,
        }
        response = requests.post(url, json=credentials, timeout=30)
        if response.status_code != 201 or "session" not in response.cookies:
            raise RuntimeError(
                f"signing up at {url} answered {response.status_code}: {response.text}"
            )
        return response.cookies["session"]

    def set(self, case, data, context):
        case.cookies = {**(case.cookies or {}), "session": data}
