//! The OpenAI-compatible gateway in the OpenAPI document: `POST /v1/chat/completions`,
//! `GET /v1/models` and `GET /v1/models/{id}`, with OpenAI's request, completion, chunk and
//! error shapes as components (the subset sift takes; see `crate::chat`).

use serde_json::{Map, Value, json};

fn component(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Adds the gateway's paths to `paths` and its shapes to `components`.
pub(super) fn add(paths: &mut Map<String, Value>, components: &mut Vec<(String, Value)>) {
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": component("OpenAiError")}}});
    let responses = json!({
        "200": {
            "description": "The completion (`stream: false`), or its chunks as server-sent events (`stream: true`), `data: [DONE]` last. A structured answer is validated before it is sent; usage is summed over every attempt (`sift-attempts` header).",
            "headers": {
                "sift-attempts": {"description": "Model calls made (structured answers re-asked when invalid)", "schema": {"type": "integer"}},
                "sift-ignored-params": {"description": "Parameters given that sift did not act on", "schema": {"type": "string"}}
            },
            "content": {
                "application/json": {"schema": component("ChatCompletion")},
                "text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {"data": {"anyOf": [
                    {"const": "[DONE]"},
                    {"type": "string", "contentMediaType": "application/json", "contentSchema": {"anyOf": [component("ChatCompletionChunk"), component("OpenAiError")]}}
                ]}}}}
            }
        },
        "400": error("The request is wrong (`error.param` names where): a parameter sift cannot honour, a schema that does not compile or that the model cannot be held to (`code` `unsupported_schema`, the message naming the keyword and its place)"),
        "401": error("A service key is required (`Authorization: Bearer KEY`, the OpenAI SDKs' `api_key`)"),
        "404": error("No model of that name is served (`code` `model_not_found`)"),
        "408": error("The request body did not arrive in time"),
        "413": error("The request body is larger than the limit"),
        "415": error("The body is declared as something other than JSON"),
        "422": error("The model's answers did not fit the schema after the re-asks (`code` `retries_exhausted`)"),
        "502": error("The upstream failed"),
        "503": error("The model is busy (`Retry-After` says when to try again)"),
        "504": error("The model did not answer in time"),
    });
    paths.insert(
        "/v1/chat/completions".into(),
        json!({"post": {
            "tags": ["openai"],
            "summary": "OpenAI's Chat Completions: a schema in `response_format` or a forced tool is enforced and validated (re-asked when invalid); without one, plain chat",
            "operationId": "chat_completions",
            "requestBody": {"required": true, "content": {"application/json": {"schema": component("ChatCompletionRequest")}}},
            "responses": responses
        }}),
    );
    let list = json!({"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": component("Model")}
    }});
    paths.insert(
        "/v1/models".into(),
        json!({"get": {
            "tags": ["openai"],
            "summary": "The models `/v1/chat/completions` answers with (a request's `model`)",
            "operationId": "list_models",
            "responses": {
                "200": {"description": "The models", "content": {"application/json": {"schema": list}}},
                "401": error("A service key is required")
            }
        }}),
    );
    paths.insert(
        "/v1/models/{id}".into(),
        json!({"get": {
            "tags": ["openai"],
            "summary": "One model",
            "operationId": "get_model",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The model", "content": {"application/json": {"schema": component("Model")}}},
                "401": error("A service key is required"),
                "404": error("No such model")
            }
        }}),
    );
    components.extend(shapes());
}

/// OpenAI's shapes, as far as sift reads and writes them.
fn shapes() -> Vec<(String, Value)> {
    let text_parts = json!({"type": "array", "items": {"oneOf": [
        {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}},
        {"type": "object", "required": ["type", "refusal"], "properties": {"type": {"const": "refusal"}, "refusal": {"type": "string"}}}
    ]}});
    let content = json!({"anyOf": [{"type": "string"}, text_parts]});
    let tool_call = json!({"type": "object", "required": ["id", "type", "function"], "properties": {
        "id": {"type": "string"},
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name", "arguments"], "properties": {
            "name": {"type": "string"},
            "arguments": {"type": "string", "description": "The arguments as a JSON text"}
        }}
    }});
    let name = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    let message = json!({"oneOf": [
        {"type": "object", "required": ["role", "content"], "properties": {
            "role": {"enum": ["system", "developer", "user"]},
            "content": content,
            "name": {"type": "string"}
        }},
        {"type": "object", "required": ["role"], "properties": {
            "role": {"const": "assistant"},
            "content": {"anyOf": [content, {"type": "null"}]},
            "tool_calls": {"type": "array", "maxItems": crate::chat::MAX_TOOLS, "items": tool_call},
            "name": {"type": "string"}
        }, "anyOf": [
            {"required": ["content"], "properties": {"content": content}},
            {"required": ["tool_calls"], "properties": {"tool_calls": {"minItems": 1}}}
        ]},
        {"type": "object", "required": ["role", "content", "tool_call_id"], "properties": {
            "role": {"const": "tool"},
            "content": content,
            "tool_call_id": {"type": "string"}
        }}
    ]});
    let function = json!({"type": "object", "required": ["name"], "properties": {
        "name": name,
        "description": {"type": "string"},
        "parameters": {"type": "object", "description": "A JSON Schema"},
        "strict": {"type": "boolean", "description": "Taken; sift validates every answer against the whole schema either way"}
    }});
    let request = json!({
        "type": "object",
        "description": "OpenAI's Chat Completions request, the subset sift acts on. The answer is structured when `response_format` is `json_schema` or `json_object`, or when `tool_choice` forces a function (by name, or `required` with one tool); otherwise the conversation is passed on as plain chat. `stop`, `logprobs`, `top_logprobs`, `audio`, `n` above 1 and the legacy `functions` are refused; other parameters (`top_p`, `user`, `metadata`, ...) are taken and named in the `sift-ignored-params` header.",
        "required": ["messages"],
        "properties": {
            "model": {"type": "string", "description": "A model of `GET /v1/models`, or `PROVIDER/MODEL` (default: the first listed)"},
            "messages": {"type": "array", "minItems": 1, "maxItems": crate::chat::MAX_MESSAGES, "items": message},
            "response_format": {"oneOf": [
                {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
                {"type": "object", "required": ["type", "json_schema"], "properties": {
                    "type": {"const": "json_schema"},
                    "json_schema": {"type": "object", "required": ["name"], "properties": {
                        "name": name,
                        "description": {"type": "string"},
                        "schema": {"type": "object", "description": "A JSON Schema (default: any object)"},
                        "strict": {"type": "boolean"}
                    }}
                }}
            ]},
            "tools": {"type": "array", "maxItems": crate::chat::MAX_TOOLS, "items": {
                "type": "object", "required": ["type", "function"],
                "properties": {"type": {"const": "function"}, "function": function}
            }},
            "tool_choice": {"oneOf": [
                {"enum": ["none", "required"], "description": "`required` forces the one tool declared"},
                {"type": "object", "required": ["type", "function"], "properties": {
                    "type": {"const": "function"},
                    "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
                }}
            ]},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": u32::MAX},
            "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": u32::MAX},
            "seed": {"type": "integer"},
            "n": {"const": 1},
            "stream": {"type": "boolean"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
        }
    });
    let usage = json!({"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"], "properties": {
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "completion_tokens": {"type": "integer", "minimum": 0},
        "total_tokens": {"type": "integer", "minimum": 0},
        "prompt_tokens_details": {"type": "object", "properties": {"cached_tokens": {"type": "integer", "minimum": 0}}}
    }});
    let finish = json!({"enum": ["stop", "length", "tool_calls"]});
    let completion = json!({"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"], "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "object", "required": ["index", "message", "finish_reason"], "properties": {
            "index": {"const": 0},
            "message": {"type": "object", "required": ["role", "content"], "properties": {
                "role": {"const": "assistant"},
                "content": {"type": ["string", "null"], "description": "The answer: free text, or the validated value as a JSON text"},
                "refusal": {"type": "null"},
                "tool_calls": {"type": "array", "minItems": 1, "maxItems": 1, "items": tool_call}
            }},
            "finish_reason": finish
        }}},
        "usage": usage
    }});
    let chunk = json!({"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion.chunk"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "maxItems": 1, "items": {"type": "object", "required": ["index", "delta"], "properties": {
            "index": {"const": 0},
            "delta": {"type": "object", "properties": {
                "role": {"const": "assistant"},
                "content": {"type": ["string", "null"]},
                "refusal": {"type": "string"},
                "tool_calls": {"type": "array", "items": {"type": "object", "required": ["index"], "properties": {"index": {"const": 0}}}}
            }},
            "finish_reason": {"anyOf": [finish, {"type": "null"}]}
        }}},
        "usage": {"anyOf": [usage, {"type": "null"}], "description": "On the last chunk (no choices) when `stream_options.include_usage` is set"}
    }});
    let error = json!({"type": "object", "description": "OpenAI's error shape", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"], "properties": {
            "message": {"type": "string"},
            "type": {"type": "string", "description": "`invalid_request_error`, `authentication_error`, `rate_limit_error` or `server_error`"},
            "param": {"type": ["string", "null"], "description": "The request parameter at fault (`messages[0].content`)"},
            "code": {"type": ["string", "null"], "description": "`model_not_found`, `invalid_schema`, `unsupported_schema`, `context_length_exceeded`, `retries_exhausted`, ..."}
        }
    }}});
    let model = json!({"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string", "description": "The provider's name in the config (`default`: the one the flags set)"}
    }});
    vec![
        ("ChatCompletionRequest".into(), request),
        ("ChatCompletion".into(), completion),
        ("ChatCompletionChunk".into(), chunk),
        ("OpenAiError".into(), error),
        ("Model".into(), model),
    ]
}
