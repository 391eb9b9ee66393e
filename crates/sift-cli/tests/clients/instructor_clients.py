"""instructor against a running `sift serve`, in TOOLS and JSON_SCHEMA modes, one object and
a list of them. Run by `crates/sift-cli/tests/it/gateway.rs` with the interpreter of the
`instructor` virtualenv scripts/setup.sh makes. Prints one JSON line per check.

Usage: instructor_clients.py BASE_URL MODEL
"""

import json
import sys
from typing import Iterable

import instructor
from openai import OpenAI
from pydantic import BaseModel

BASE_URL, MODEL = sys.argv[1], sys.argv[2]


class UserDetail(BaseModel):
    name: str
    age: int


for mode in [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA]:
    client = instructor.from_openai(
        OpenAI(base_url=BASE_URL, api_key="sk-sift-service", max_retries=0), mode=mode
    )
    name = mode.name.lower()
    try:
        user = client.chat.completions.create(
            model=MODEL,
            response_model=UserDetail,
            max_retries=0,
            messages=[{"role": "user", "content": "Extract: Jason is 25 years old"}],
        )
        print(json.dumps({"check": f"{name}_one", "value": user.model_dump()}), flush=True)
        users = client.chat.completions.create(
            model=MODEL,
            response_model=Iterable[UserDetail],
            max_retries=0,
            messages=[{"role": "user", "content": "Extract: Jason is 25 years old and Sarah is 30"}],
        )
        print(json.dumps({"check": f"{name}_many", "value": [u.model_dump() for u in users]}),
              flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported to the test
        print(json.dumps({"check": name, "error": type(e).__name__, "message": str(e)}), flush=True)
