//! Continuous batching and prompt reuse on the real model: answers that run together are the
//! answers that run alone, a cancelled generation frees its place at once, a kept prompt is
//! reused, and only a full queue refuses.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sift_core::{ChatDelta, ChatRequest, Client, Message, OutputFormat, Provider, ProviderError};
use sift_local::{LocalConfig, LocalProvider};

use crate::provider;

/// A provider of its own (the shared one keeps prompts and runs other tests' generations).
fn own(config: LocalConfig) -> LocalProvider {
    LocalProvider::load(
        config
            .context_size(1024)
            .model_path(provider().model_path().to_path_buf()),
    )
    .unwrap()
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct UserDetail {
    name: String,
    age: i64,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Order {
    #[schemars(range(min = 1, max = 99))]
    quantity: u8,
    item: String,
    express: bool,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Address {
    city: String,
    country: String,
}

/// Request `i` of the eight: three schemas, different texts.
async fn ask(client: &Client, i: usize) -> Value {
    let users = [
        "Daniel is a 24 year man living in New York City",
        "Sarah is 20 and studies in Leeds.",
        "Jeffrey, 55, retired last spring.",
    ];
    let orders = [
        "2 pizzas, express please",
        "Three boxes of nails, no rush.",
        "One umbrella, send it express",
    ];
    let places = [
        "The parcel goes to Lisbon, Portugal.",
        "She moved to Osaka in Japan.",
    ];
    let value = match i {
        0..3 => client
            .extract::<UserDetail>()
            .user(users[i])
            .max_retries(0)
            .send()
            .await
            .map(|o| serde_json::to_value(o.value).unwrap()),
        3..6 => client
            .extract::<Order>()
            .user(format!("Extract the order: `{}`", orders[i - 3]))
            .max_retries(0)
            .send()
            .await
            .map(|o| serde_json::to_value(o.value).unwrap()),
        _ => client
            .extract::<Address>()
            .user(format!("Extract the address: `{}`", places[i - 6]))
            .max_retries(0)
            .send()
            .await
            .map(|o| serde_json::to_value(o.value).unwrap()),
    };
    value.unwrap_or_else(|e| panic!("request {i}: {e}"))
}

/// Requests `0..n` asked one at a time, then all at once: where the answers differ, and the
/// most that ran at once while asked one at a time.
async fn alone_then_together<F, Fut>(p: &LocalProvider, n: usize, ask: F) -> (Vec<String>, usize)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let mut alone = Vec::new();
    for i in 0..n {
        alone.push(ask(i).await);
    }
    let peak_alone = p.stats().peak_running;
    let together = futures::future::join_all((0..n).map(&ask)).await;
    let differ = alone
        .iter()
        .zip(&together)
        .enumerate()
        .filter(|(_, (a, t))| a != t)
        .map(|(i, (a, t))| format!("request {i}: alone {a}, together {t}"))
        .collect();
    (differ, peak_alone)
}

#[tokio::test]
async fn eight_requests_with_three_schemas_together_answer_as_they_do_alone() {
    let _serial = crate::serial().await;
    // No kept prompts: alone and together, every prompt is read in full.
    let p = own(LocalConfig::default().parallel(8).keep_prompts(false));
    let client = Client::new(p.clone());
    let (differ, peak_alone) = alone_then_together(&p, 8, |i| ask(&client, i)).await;
    assert_eq!(peak_alone, 1, "one at a time");
    let stats = p.stats();
    assert!(stats.peak_running >= 4, "the eight ran together: {stats:?}");
    assert!(differ.is_empty(), "{differ:#?}");
    assert_eq!(stats.running, 0);
    assert_eq!(stats.waiting, 0);
}

/// Request `i` of four long ones (over 64 tokens of prompt each, read in the larger batches).
async fn ask_long(client: &Client, i: usize) -> Value {
    let people = [
        ("Daniel", 24, "New York City"),
        ("Sarah", 20, "Leeds"),
        ("Jeffrey", 55, "Paris"),
        ("Maria", 31, "Lisbon"),
    ];
    let (name, age, city) = people[i];
    let text = format!(
        "Minutes of the residents' meeting, item {i}. The chair opened the session at seven and read          the notes of the last meeting, which were approved without changes. The treasurer reported          that the garden fund now holds enough for new benches and that the repairs to the gate are          paid for. Among the new members welcomed tonight was {name}, who is {age} years old and          moved here from {city} last month. The meeting closed at nine after a vote on the summer fair."
    );
    client
        .extract::<UserDetail>()
        .user(format!("Extract the new member: `{text}`"))
        .max_retries(0)
        .send()
        .await
        .map(|o| serde_json::to_value(o.value).unwrap())
        .unwrap_or_else(|e| Value::String(format!("failed: {e}")))
}

#[tokio::test]
async fn long_prompts_read_together_answer_as_they_do_alone() {
    let _serial = crate::serial().await;
    let p = own(LocalConfig::default().parallel(4).keep_prompts(false));
    let client = Client::new(p.clone());
    let (differ, _) = alone_then_together(&p, 4, |i| ask_long(&client, i)).await;
    assert!(
        p.stats().peak_running >= 2,
        "they ran together: {:?}",
        p.stats()
    );
    assert!(differ.is_empty(), "{differ:#?}");
}

/// A request whose answer is long: a list of forty strings.
fn long_request(p: &LocalProvider) -> ChatRequest {
    ChatRequest {
        model: p.default_model().to_owned(),
        messages: vec![Message::user("Write forty hobbies, one per item.")],
        output: OutputFormat::JsonSchema {
            name: "Hobbies".into(),
            schema: serde_json::json!({
                "type": "object",
                "properties": {"hobbies": {"type": "array", "items": {"type": "string"},
                                           "minItems": 40}},
                "required": ["hobbies"]
            }),
            strict: true,
        },
        temperature: None,
        max_tokens: Some(300),
        seed: None,
        structured: None,
    }
}

/// Reads `stream` until it has given text.
async fn first_text(stream: &mut sift_core::ChatStream) {
    while let Some(delta) = stream.next().await {
        if matches!(delta.unwrap(), ChatDelta::Content(_)) {
            return;
        }
    }
    panic!("the stream ended without text");
}

async fn wait_for(p: &LocalProvider, what: &str, done: impl Fn(&sift_local::LocalStats) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done(&p.stats()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {:?}",
            p.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_cancelled_generation_in_a_full_batch_frees_its_place_at_once() {
    let _serial = crate::serial().await;
    // Two places, no waiting room.
    let p = own(LocalConfig::default().parallel(2).queue(0));
    let mut a = p.chat_stream(&long_request(&p)).await.unwrap();
    let mut b = p.chat_stream(&long_request(&p)).await.unwrap();
    first_text(&mut a).await;
    first_text(&mut b).await;
    assert_eq!(p.stats().running, 2);
    // Full: a third is refused.
    let refused = p.chat_stream(&long_request(&p)).await;
    assert!(
        matches!(refused, Err(ProviderError::Busy { .. })),
        "a full engine refuses"
    );
    drop(b);
    wait_for(&p, "the dropped generation ends", |s| {
        s.running == 1 && s.cancelled == 1
    })
    .await;
    // Its place is free while the other still runs: a short request is served beside it.
    let out = Client::new(p.clone())
        .extract::<UserDetail>()
        .user("Daniel is a 24 year man living in New York City")
        .send()
        .await
        .unwrap();
    assert_eq!(out.value.age, 24);
    let stats = p.stats();
    assert_eq!(
        stats.completed, 1,
        "only the short one has finished: {stats:?}"
    );
    assert_eq!(stats.running, 1, "the long one still runs: {stats:?}");
    drop(a);
    wait_for(&p, "the second dropped generation ends", |s| {
        s.running == 0 && s.cancelled == 2
    })
    .await;
}

#[tokio::test]
async fn the_second_request_of_an_extractor_reuses_the_kept_prompt_and_answers_the_same() {
    let _serial = crate::serial().await;
    let keeping = own(LocalConfig::default());
    let fresh = own(LocalConfig::default().keep_prompts(false));
    let first = "Sarah is 20 and studies in Leeds.";
    let second = "Daniel is a 24 year man living in New York City";
    let ask = |p: &LocalProvider, text: &'static str| {
        let client = Client::new(p.clone());
        async move {
            client
                .extract::<UserDetail>()
                .user(text)
                .max_retries(0)
                .send()
                .await
                .unwrap()
        }
    };
    let one = ask(&keeping, first).await;
    assert_eq!(one.usage.cached_input_tokens, 0, "nothing kept yet");
    let two = ask(&keeping, second).await;
    // The system prompt and the template's framing are shared.
    assert!(
        two.usage.cached_input_tokens >= 10,
        "reused: {:?}",
        two.usage
    );
    assert!(two.usage.cached_input_tokens < two.usage.input_tokens);
    assert_eq!(
        two.attempts[0].usage.cached_input_tokens,
        two.usage.cached_input_tokens
    );
    assert_eq!(
        keeping.stats().cached_prompt_tokens,
        two.usage.cached_input_tokens
    );
    // The same prompt again: all but its last token is reused.
    let again = ask(&keeping, second).await;
    assert_eq!(
        again.usage.cached_input_tokens,
        again.usage.input_tokens - 1
    );
    let unkept = ask(&fresh, second).await;
    assert_eq!(unkept.usage.cached_input_tokens, 0);
    for got in [&two.value, &again.value] {
        assert_eq!(got.name, unkept.value.name);
        assert_eq!(got.age, unkept.value.age);
    }
}

#[tokio::test]
async fn requests_beyond_the_running_ones_wait_and_only_a_full_queue_refuses() {
    let _serial = crate::serial().await;
    // One running, two waiting.
    let p = own(LocalConfig::default().parallel(1).queue(2));
    let client = Client::new(p.clone());
    let ask = || {
        client
            .extract::<UserDetail>()
            .user("Daniel is a 24 year man living in New York City")
            .max_retries(0)
            .send()
    };
    let three = futures::future::join_all((0..3).map(|_| ask())).await;
    assert!(
        three.iter().all(Result::is_ok),
        "three fit: {:?}",
        three.iter().map(|r| r.is_ok()).collect::<Vec<_>>()
    );
    let four = futures::future::join_all((0..4).map(|_| ask())).await;
    let busy = four
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(sift_core::ExtractError::Provider {
                    source: ProviderError::Busy { .. },
                    ..
                })
            )
        })
        .count();
    assert_eq!(busy, 1, "only the fourth finds the queue full");
    assert_eq!(four.iter().filter(|r| r.is_ok()).count(), 3);
}
