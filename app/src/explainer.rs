//! "How it works": the write path in steps, the architecture as a diagram, this app's
//! sync model (its real source) and the callback shapes (serialized from the real
//! protocol types, so the page cannot drift from the code).

use leptos::prelude::*;

#[cfg(not(feature = "hydrate"))]
mod content;

/// The "How it works" section. Its content is static, so the server renders it and
/// the page's bundle carries none of it: in the browser the section hydrates with
/// an empty `inner_html`, which leaves what the server sent in place.
#[component]
pub fn HowItWorks() -> impl IntoView {
    view! {
        <section
            class="explainer"
            aria-labelledby="explainer-title"
            data-testid="how-it-works"
            inner_html=content_html()
        />
    }
}

/// The section's content as HTML (server only, rendered once per worker instance:
/// it never changes; empty in the browser's bundle).
fn content_html() -> String {
    #[cfg(feature = "hydrate")]
    return String::new();
    #[cfg(not(feature = "hydrate"))]
    {
        static HTML: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        HTML.get_or_init(|| content::content().to_html()).clone()
    }
}

#[cfg(all(test, not(feature = "hydrate")))]
mod tests {
    use super::content::{callback_examples, model_source};

    #[test]
    fn the_page_shows_the_models_own_source() {
        let shown = model_source();
        assert!(shown.starts_with("/// The chat's sync model."), "{shown}");
        assert!(shown.contains("ROOM_MESSAGES\n                .define()"));
        assert!(shown.trim_end().ends_with(".build();"), "{shown}");
    }

    #[test]
    fn the_callback_examples_use_the_seed_field_names() {
        let examples = callback_examples();
        let query: serde_json::Value = serde_json::from_str(&examples[0].json).expect("json");
        let keys: Vec<&str> = query.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, ["args", "client_id", "operation_kind", "operation_name", "session_id"]);
        assert_eq!(query["operation_kind"], "query");
        let mutation: serde_json::Value = serde_json::from_str(&examples[1].json).expect("json");
        assert_eq!(mutation["operation_kind"], "mutation");
        let operation = mutation["operations"][0].as_object().expect("operation");
        let keys: Vec<&str> = operation.keys().map(String::as_str).collect();
        assert_eq!(keys, ["args", "collection", "id", "mutation_kind", "operation_name", "record_id"]);
        assert_eq!(examples[2].json, "{\n  \"allow\": true\n}");
    }
}
