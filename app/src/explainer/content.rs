//! The "How it works" section's content, rendered by the server only (the browser
//! keeps the server's HTML: see [`super::HowItWorks`]).

use leptos::prelude::*;
use sync::model::MutationKind;
use sync::protocol::Decision;
use sync::protocol::mutation_callback::{
    MutationCallbackOperation, MutationCallbackRequest, MutationCallbackResponse, OperationDecision,
};
use sync::protocol::query_callback::QueryCallbackRequest;

/// The model's source between its `[model]` markers.
pub(super) fn model_source() -> String {
    let source = include_str!("../model.rs");
    let start = source.find("// [model]").and_then(|i| source[i..].find('\n').map(|n| i + n + 1));
    let end = source.find("    // [/model]");
    match (start, end) {
        (Some(start), Some(end)) if start < end => source[start..end].trim_end().to_string(),
        _ => source.to_string(),
    }
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub(super) struct Example {
    pub(super) title: &'static str,
    pub(super) json: String,
}

pub(super) fn callback_examples() -> Vec<Example> {
    const CLIENT: &str = "client_01JD3Q0YB8W4K2M5N7P9R1S3T5";
    const SESSION: &str = "session_01JD3Q0YC2X6Z8A0B2C4D6E8F0";
    let query = QueryCallbackRequest::new(
        CLIENT,
        SESSION,
        crate::model::ROOM_MESSAGES.name(),
        serde_json::json!({ "roomId": "94462" }),
    );
    let mutation = MutationCallbackRequest::new(
        CLIENT,
        SESSION,
        vec![MutationCallbackOperation {
            args: serde_json::json!({ "roomId": "94462", "authorName": "Ada", "body": "Hello!" }),
            collection: crate::model::MESSAGES.into(),
            id: "outbox_01JD3Q1A4G6J8K0M2N4P6Q8R0S".into(),
            mutation_kind: MutationKind::Insert,
            operation_name: crate::model::SEND_MESSAGE.name().into(),
            record_id: "messages_01JD3Q1A4H7K9M1N3P5Q7R9S1T".into(),
        }],
    );
    let per_operation = MutationCallbackResponse::PerOperation {
        operations: vec![OperationDecision {
            allow: false,
            id: "outbox_01JD3Q1A4G6J8K0M2N4P6Q8R0S".into(),
            reason: Some("a message has at most 2000 characters".into()),
        }],
    };
    vec![
        Example { title: "Query callback: request", json: pretty(&query) },
        Example { title: "Mutation callback: request", json: pretty(&mutation) },
        Example { title: "Answer: allow", json: pretty(&Decision::allow()) },
        Example {
            title: "Answer: deny (a read, or a whole write batch)",
            json: pretty(&Decision::deny("sign in first")),
        },
        Example { title: "Answer: per write", json: pretty(&per_operation) },
    ]
}

/// The architecture, drawn: browser, Cloudflare, upstream, the app's callbacks.
#[component]
fn Diagram() -> impl IntoView {
    view! {
        <svg
            class="diagram"
            viewBox="0 0 760 400"
            role="img"
            aria-labelledby="diagram-title diagram-desc"
            data-testid="architecture-diagram"
        >
            <title id="diagram-title">"Architecture"</title>
            <desc id="diagram-desc">
                "The browser writes to local SQLite and its outbox; the SQLite worker pushes the outbox to the connector worker, which asks the app's callbacks, writes to D1 or PostgreSQL with a change log, and pokes Query Subscription and Client Session Durable Objects, which tell other browsers to pull."
            </desc>
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                    <path d="M0,0 L10,5 L0,10 z" class="diagram__arrowhead"/>
                </marker>
            </defs>
            // Zones
            <rect x="10" y="10" width="220" height="380" rx="14" class="diagram__zone"/>
            <text x="24" y="36" class="diagram__zone-label">"Browser"</text>
            <rect x="260" y="10" width="300" height="380" rx="14" class="diagram__zone diagram__zone--cloud"/>
            <text x="274" y="36" class="diagram__zone-label">"Cloudflare"</text>
            <rect x="590" y="10" width="160" height="380" rx="14" class="diagram__zone"/>
            <text x="604" y="36" class="diagram__zone-label">"Your side"</text>
            // Browser
            <rect x="30" y="56" width="180" height="64" rx="10" class="diagram__box"/>
            <text x="120" y="84" class="diagram__name">"Leptos UI"</text>
            <text x="120" y="104" class="diagram__note">"use_query · use_mutator"</text>
            <rect x="30" y="170" width="180" height="84" rx="10" class="diagram__box diagram__box--local"/>
            <text x="120" y="198" class="diagram__name">"SQLite worker"</text>
            <text x="120" y="218" class="diagram__note">"rows + outbox on OPFS"</text>
            <text x="120" y="238" class="diagram__note">"one tab leads (Web Lock)"</text>
            // Cloudflare
            <rect x="280" y="56" width="260" height="84" rx="10" class="diagram__box"/>
            <text x="410" y="84" class="diagram__name">"Connector worker"</text>
            <text x="410" y="104" class="diagram__note">"checks names against the model"</text>
            <text x="410" y="124" class="diagram__note">"SSR page · /sync/query · push · pull"</text>
            <rect x="280" y="200" width="120" height="70" rx="10" class="diagram__box diagram__box--do"/>
            <text x="340" y="228" class="diagram__name">"Query"</text>
            <text x="340" y="248" class="diagram__note">"Subscription DO"</text>
            <rect x="420" y="200" width="120" height="70" rx="10" class="diagram__box diagram__box--do"/>
            <text x="480" y="228" class="diagram__name">"Client"</text>
            <text x="480" y="248" class="diagram__note">"Session DO"</text>
            <rect x="280" y="310" width="260" height="64" rx="10" class="diagram__box diagram__box--db"/>
            <text x="410" y="338" class="diagram__name">"Upstream: D1 / PostgreSQL"</text>
            <text x="410" y="358" class="diagram__note">"rows + change log + cursor"</text>
            // Your side
            <rect x="606" y="56" width="128" height="84" rx="10" class="diagram__box"/>
            <text x="670" y="84" class="diagram__name">"Callbacks"</text>
            <text x="670" y="104" class="diagram__note">"may this user"</text>
            <text x="670" y="124" class="diagram__note">"read / write?"</text>
            // Arrows, numbered as in the steps
            <path d="M120,120 L120,168" class="diagram__arrow" marker-end="url(#arrow)"/>
            <text x="128" y="150" class="diagram__step">"1"</text>
            <path d="M210,190 L278,110" class="diagram__arrow" marker-end="url(#arrow)"/>
            <text x="236" y="140" class="diagram__step">"2"</text>
            <path d="M540,98 L604,98" class="diagram__arrow" marker-end="url(#arrow)"/>
            <text x="566" y="90" class="diagram__step">"3"</text>
            <path d="M300,140 L300,308" class="diagram__arrow" marker-end="url(#arrow)"/>
            <text x="306" y="290" class="diagram__step">"4"</text>
            <path d="M360,140 L345,198" class="diagram__arrow" marker-end="url(#arrow)"/>
            <text x="360" y="178" class="diagram__step">"5"</text>
            <path d="M400,235 L418,235" class="diagram__arrow" marker-end="url(#arrow)"/>
            <path d="M480,270 Q470,300 380,292 Q240,280 212,240" class="diagram__arrow diagram__arrow--poke" marker-end="url(#arrow)"/>
            <text x="250" y="268" class="diagram__step">"6"</text>
            <path d="M212,224 Q250,160 282,128" class="diagram__arrow diagram__arrow--pull" marker-end="url(#arrow)"/>
            <text x="222" y="178" class="diagram__step">"7"</text>
        </svg>
    }
}

pub(super) fn content() -> impl IntoView {
    view! {
            <h2 id="explainer-title">"How it works"</h2>
            <p>
                "Every browser keeps its own SQLite database. Reads come from it, so the list above never waits for the network; writes go into it first and are shipped to the server afterwards. The server side is one Rust Cloudflare Worker, two kinds of Durable Objects and an upstream database that stays the source of truth."
            </p>
            <Diagram/>
            <ol class="explainer__steps">
                <li>
                    <strong>"Write locally. "</strong>
                    "Send runs the named mutator "<code>"sendMessage"</code>" in the SQLite Web Worker: the message row and an outbox entry are written in one transaction, and the list updates at once (it shows “sending”)."
                </li>
                <li>
                    <strong>"Push. "</strong>
                    "The worker sends the outbox, in order, to the connector. Offline, the entries wait; they go out when the network is back, retried with backoff."
                </li>
                <li>
                    <strong>"Ask the app. "</strong>
                    "The connector checks each write against the sync model, then asks the app's mutation callback (forwarding the user's authorization header and the engine secret) whether to allow it."
                </li>
                <li>
                    <strong>"Apply upstream. "</strong>
                    "Allowed writes are applied to D1 or PostgreSQL, each in one transaction with its change-log row and an idempotency record, so a retry is never applied twice. The answer confirms or rejects each write; a rejected write is rolled back in the browser with its reason."
                </li>
                <li>
                    <strong>"Poke the query. "</strong>
                    "The change's room maps to a subscription key ("<code>"roomMessages{roomId}"</code>"); the Query Subscription object for that key knows which sessions watch it."
                </li>
                <li>
                    <strong>"Poke the clients. "</strong>
                    "Each Client Session object sends its browser a small poke over a hibernating WebSocket."
                </li>
                <li>
                    <strong>"Pull. "</strong>
                    "The poked browser asks for the changes after its cursor, for the queries it watches, and applies them to its SQLite database; live queries re-render."
                </li>
            </ol>
            <h3>"This app's sync model"</h3>
            <p>
                "One definition, compiled into both the browser and the worker: the collections the browser may hold, the reads allowed by name with their required predicates, and the writes allowed by name with their required values."
            </p>
            <pre class="code" data-testid="model-code"><code>{model_source()}</code></pre>
            <h3>"The callbacks"</h3>
            <p>
                "The connector asks the app before every read and write. Both callbacks are plain HTTP POSTs with JSON bodies, the user's "<code>"authorization"</code>" header and an "<code>"x-sync-engine-secret"</code>" header."
            </p>
            <div class="examples">
                {callback_examples()
                    .into_iter()
                    .map(|example| {
                        view! {
                            <figure class="example">
                                <figcaption>{example.title}</figcaption>
                                <pre class="code"><code>{example.json}</code></pre>
                            </figure>
                        }
                    })
                    .collect_view()}
            </div>
    }
}
