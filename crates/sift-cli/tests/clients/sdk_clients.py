"""Real OpenAI-API clients against a running `sift serve`: openai-python, pydantic-ai and
LangChain. Run by `crates/sift-cli/tests/it/gateway.rs` with the interpreter of the `sdk`
virtualenv scripts/setup.sh makes. Prints one JSON line per check: {"check", "value"} or
{"check", "error", "status", "message"}.

Usage: sdk_clients.py BASE_URL MODEL CHECK...
"""

import json
import sys
from typing import Optional

from pydantic import BaseModel, Field

BASE_URL, MODEL, CHECKS = sys.argv[1], sys.argv[2], sys.argv[3:]
API_KEY = "sk-sift-service"
PROMPT = "Extract: Jason is 25 years old"


class UserDetail(BaseModel):
    name: str
    age: int


class Coded(BaseModel):
    """A value the embedded model's grammar cannot enforce: a lookahead (given as schema
    text only: pydantic's own regex engine refuses lookarounds)."""

    code: str = Field(json_schema_extra={"pattern": "^(?!x)[a-z]+$"})


def openai_client():
    import openai

    # No retries of its own: a failure must show as it is.
    return openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)


def openai_parse():
    completion = openai_client().chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        response_format=UserDetail,
    )
    return {"parsed": completion.choices[0].message.parsed.model_dump(),
            "total_tokens": completion.usage.total_tokens}


def openai_stream():
    chunks = 0
    with openai_client().chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        response_format=UserDetail,
        stream_options={"include_usage": True},
    ) as stream:
        for event in stream:
            if event.type == "chunk":
                chunks += 1
        final = stream.get_final_completion()
    return {"parsed": final.choices[0].message.parsed.model_dump(), "chunks": chunks,
            "total_tokens": final.usage.total_tokens}


def openai_tool():
    import openai

    completion = openai_client().chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        tools=[openai.pydantic_function_tool(UserDetail)],
        tool_choice={"type": "function", "function": {"name": "UserDetail"}},
    )
    call = completion.choices[0].message.tool_calls[0]
    return {"name": call.function.name, "parsed": call.function.parsed_arguments.model_dump(),
            "finish_reason": completion.choices[0].finish_reason}


def openai_unenforceable():
    completion = openai_client().chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "The code is abc"}],
        response_format=Coded,
    )
    return {"parsed": completion.choices[0].message.parsed.model_dump()}


def openai_models():
    return {"ids": [m.id for m in openai_client().models.list()]}


def pydantic_ai_agent():
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=BASE_URL, api_key=API_KEY))
    agent = Agent(model, output_type=UserDetail)
    result = agent.run_sync(PROMPT)
    return {"parsed": result.output.model_dump()}


def langchain_structured():
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=BASE_URL, api_key=API_KEY, max_retries=0)
    out = {}
    for method in ["json_schema", "function_calling"]:
        user = llm.with_structured_output(UserDetail, method=method).invoke(PROMPT)
        out[method] = user.model_dump()
    return {"parsed": out}


for check in CHECKS:
    try:
        value = globals()[check]()
        print(json.dumps({"check": check, "value": value}), flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported to the test
        status: Optional[int] = getattr(e, "status_code", None)
        print(json.dumps({"check": check, "error": type(e).__name__, "status": status,
                          "message": str(e)}), flush=True)
