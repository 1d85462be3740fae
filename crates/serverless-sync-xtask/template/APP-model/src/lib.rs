//! {{Title}}: {{collection}} on shared boards. A board lives at `/board/{id}`; anyone
//! signed in who has its link adds, edits and deletes its {{collection}}, and sees the
//! others' changes live, offline too.
//!
//! This crate is what the browser and the worker share: the sync model (declared
//! once, typed) and the rules the worker applies to every write.

use serde::{Deserialize, Serialize};
use sync::protocol::mutation_callback::MutationCallbackOperation;
use sync::{
    Delete, Deletes, Insert, Inserts, Mutator, Operator, Order, Query, Select, SyncModel, Update, Updates,
};

/// The app's name: scopes its browser storage and names its sign-in tokens (`aud`).
pub const APP_NAME: &str = "{{app}}";
pub const {{ROWS}}: &str = {{Row}}::COLLECTION;

/// A board's {{collection}}, oldest first.
pub const LIST_{{ROWS}}: Query<BoardArgs, {{Row}}> = Query::new("list{{Rows}}", {{ROWS}});
pub const ADD_{{ROW}}: Mutator<{{Row}}Fields, Inserts> = Mutator::insert("add{{Row}}", {{ROWS}});
pub const EDIT_{{ROW}}: Mutator<{{Row}}Fields, Updates> = Mutator::update("edit{{Row}}", {{ROWS}});
pub const DELETE_{{ROW}}: Mutator<BoardArgs, Deletes> = Mutator::delete("delete{{Row}}", {{ROWS}});

/// Longest text a field may hold, in characters (the rules' limit).
pub const MAX_TEXT_CHARS: usize = 500;

/// A row of `{{collection}}`: its fields are the collection's columns, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sync::Collection)]
#[collection(name = "{{collection}}", index = "board_id, created_at, id")]
pub struct {{Row}} {
    pub id: String,
    pub board_id: String,
{{row_fields}}    pub created_at: i64,
    pub updated_by: String,
}

/// The board a query or a delete is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoardArgs {
    pub board_id: String,
}

/// What a user writes: the board and every field (adding and editing send the same).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct {{Row}}Fields {
    pub board_id: String,
{{struct_fields}}}

impl {{Row}}Fields {
    /// The fields of `row`, to edit them.
    pub fn of(row: &{{Row}}) -> {{Row}}Fields {
        {{Row}}Fields {
            board_id: row.board_id.clone(),
{{copy_fields}}        }
    }

    /// Texts without surrounding spaces: what every client and the server store.
    fn normalized(self) -> {{Row}}Fields {
        {{Row}}Fields {
            board_id: self.board_id.trim().to_string(),
{{trim_fields}}        }
    }

    /// The rules for a write: `Err` is the reason the user sees.
    pub fn check(&self) -> Result<(), String> {
{{checks}}        Ok(())
    }
}

/// A text field's rule: at most [`MAX_TEXT_CHARS`] characters, and not empty if `required`.
fn check_text(field: &str, text: &str, required: bool) -> Result<(), String> {
    match text.chars().count() {
        0 if required => Err(format!("a {{row_words}} needs a {field}")),
        n if n > MAX_TEXT_CHARS => Err(format!("a {field} has at most {MAX_TEXT_CHARS} characters (this one has {n})")),
        _ => Ok(()),
    }
}

/// The sync model: one collection, one query, three mutators.
pub fn {{app_snake}}_model() -> SyncModel {
    let model = SyncModel::builder()
        .collection({{Row}}::collection())
        .query(LIST_{{ROWS}}.define().require("boardId", "board_id", Operator::Eq).build(|args| {
            Select::from({{ROWS}})
                .filter("board_id", Operator::Eq, args.board_id.clone())
                .order_by("created_at", Order::Asc)
                .order_by("id", Order::Asc)
        }))
        .mutator(ADD_{{ROW}}.define().require("boardId", "board_id").normalize({{Row}}Fields::normalized).build(
            |args, ctx| {
                Insert::into({{ROWS}})
                    .value("id", ctx.record_id.clone())
                    .value("board_id", args.board_id.clone())
{{insert_values}}                    .value("created_at", ctx.now_ms)
                    .value("updated_by", ctx.client_id.clone())
            },
        ))
        .mutator(EDIT_{{ROW}}.define().require("boardId", "board_id").normalize({{Row}}Fields::normalized).build(
            |args, ctx| {
                Update::record({{ROWS}}, ctx.record_id.clone())
{{update_sets}}                    .set("updated_by", ctx.client_id.clone())
                    .guard("board_id", Operator::Eq, args.board_id.clone())
            },
        ))
        .mutator(DELETE_{{ROW}}.define().require("boardId", "board_id").build(|args, ctx| {
            Delete::record({{ROWS}}, ctx.record_id.clone()).guard("board_id", Operator::Eq, args.board_id.clone())
        }))
        .build();
    match model {
        Ok(model) => model,
        // A constant of this program, built by its tests: unreachable once they pass.
        Err(error) => panic!("the sync model is invalid: {error}"),
    }
}

/// The rules for one write, as the worker's mutation callback applies them.
pub fn judge_write(operation: &MutationCallbackOperation) -> Result<(), String> {
    if let Some(fields) = operation.args_as(&ADD_{{ROW}}).or_else(|| operation.args_as(&EDIT_{{ROW}})) {
        fields?.check()
    } else if operation.args_as(&DELETE_{{ROW}}).is_some() {
        Ok(())
    } else {
        Err(format!("{} is not an operation of this app", operation.operation_name))
    }
}

/// Board ids are what a URL segment holds without escaping.
pub fn clean_board_id(input: &str) -> Option<String> {
    let id: String = input
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync::model::MutationContext;

    fn ctx() -> MutationContext {
        MutationContext { client_id: "client_a".into(), record_id: "{{collection}}_1".into(), now_ms: 5 }
    }

    fn sample() -> {{Row}}Fields {
        {{Row}}Fields {
            board_id: " board-1 ".into(),
{{sample_fields}}        }
    }

    #[test]
    fn adding_stores_the_normalized_fields_on_its_board() {
        let args = serde_json::to_value(sample()).expect("json");
        let write = {{app_snake}}_model().validate_mutation(ADD_{{ROW}}.name(), &args, &ctx()).expect("valid");
        let sync::Operation::Insert(insert) = write.operation else { panic!("an insert") };
        assert_eq!(insert.values["board_id"], serde_json::json!("board-1"));
        assert_eq!(insert.values["updated_by"], serde_json::json!("client_a"));
    }

    #[test]
    fn edits_are_guarded_by_the_board() {
        let args = serde_json::to_value(sample()).expect("json");
        let write = {{app_snake}}_model().validate_mutation(EDIT_{{ROW}}.name(), &args, &ctx()).expect("valid");
        let sync::Operation::Update(update) = write.operation else { panic!("an update") };
        assert!(update.guards.iter().any(|guard| guard.column == "board_id"));
    }

    #[test]
    fn the_rules_accept_the_sample_and_refuse_what_they_should() {
        assert_eq!(sample().check(), Ok(()));
{{check_tests}}    }
}
