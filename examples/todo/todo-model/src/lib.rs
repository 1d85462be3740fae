//! A shared todo list, the engine's second example: lists live at `/list/{id}` (like
//! the chat's rooms); anyone signed in who has the link may add, tick, rename and
//! delete items, and sees the others' changes live.
//!
//! This crate is what the browser and the worker share: the sync model (declared
//! once, typed) and the rules the worker's callbacks apply.

use serde::{Deserialize, Serialize};
use sync::protocol::mutation_callback::MutationCallbackOperation;
use sync::protocol::query_callback::QueryCallbackRequest;
use sync::{
    Delete, Deletes, Insert, Inserts, Mutator, Operator, Order, Query, Select, SyncModel, Update, Updates,
};

/// The app's name: scopes its browser storage and names its sign-in tokens (`aud`).
pub const APP_NAME: &str = "todo";
pub const TODOS: &str = Todo::COLLECTION;

/// A list's items, oldest first.
pub const LIST_TODOS: Query<ListArgs, Todo> = Query::new("listTodos", TODOS);
pub const ADD_TODO: Mutator<AddTodo, Inserts> = Mutator::insert("addTodo", TODOS);
pub const SET_DONE: Mutator<SetDone, Updates> = Mutator::update("setDone", TODOS);
pub const RENAME_TODO: Mutator<RenameTodo, Updates> = Mutator::update("renameTodo", TODOS);
pub const DELETE_TODO: Mutator<ListArgs, Deletes> = Mutator::delete("deleteTodo", TODOS);

/// Longest title the rules accept.
pub const MAX_TITLE_CHARS: usize = 200;

/// A row of `todos`: the collection is declared here, once (its columns are these
/// fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sync::Collection)]
#[collection(name = "todos", index = "list_id, created_at, id")]
pub struct Todo {
    pub id: String,
    pub list_id: String,
    pub title: String,
    pub done: bool,
    pub created_at: i64,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListArgs {
    pub list_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddTodo {
    pub list_id: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetDone {
    pub list_id: String,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenameTodo {
    pub list_id: String,
    pub title: String,
}

fn trimmed(text: &str) -> String {
    text.trim().to_string()
}

/// The todo list's sync model.
pub fn todo_model() -> SyncModel {
    let model = SyncModel::builder()
        .collection(Todo::collection())
        .query(LIST_TODOS.define().require("listId", "list_id", Operator::Eq).build(|args| {
            Select::from(TODOS)
                .filter("list_id", Operator::Eq, args.list_id.clone())
                .order_by("created_at", Order::Asc)
                .order_by("id", Order::Asc)
        }))
        .mutator(
            ADD_TODO
                .define()
                .require("listId", "list_id")
                .normalize(|args| AddTodo { list_id: trimmed(&args.list_id), title: trimmed(&args.title) })
                .build(|args, ctx| {
                    Insert::into(TODOS)
                        .value("id", ctx.record_id.clone())
                        .value("list_id", args.list_id.clone())
                        .value("title", args.title.clone())
                        .value("done", false)
                        .value("created_at", ctx.now_ms)
                        .value("updated_by", ctx.client_id.clone())
                }),
        )
        .mutator(SET_DONE.define().require("listId", "list_id").build(|args, ctx| {
            Update::record(TODOS, ctx.record_id.clone())
                .set("done", args.done)
                .set("updated_by", ctx.client_id.clone())
                .guard("list_id", Operator::Eq, args.list_id.clone())
        }))
        .mutator(
            RENAME_TODO
                .define()
                .require("listId", "list_id")
                .normalize(|args| RenameTodo { list_id: trimmed(&args.list_id), title: trimmed(&args.title) })
                .build(|args, ctx| {
                    Update::record(TODOS, ctx.record_id.clone())
                        .set("title", args.title.clone())
                        .set("updated_by", ctx.client_id.clone())
                        .guard("list_id", Operator::Eq, args.list_id.clone())
                }),
        )
        .mutator(DELETE_TODO.define().require("listId", "list_id").build(|args, ctx| {
            Delete::record(TODOS, ctx.record_id.clone()).guard("list_id", Operator::Eq, args.list_id.clone())
        }))
        .build();
    match model {
        Ok(model) => model,
        // A constant of this program, built by its tests: unreachable once they pass.
        Err(error) => panic!("the todo sync model is invalid: {error}"),
    }
}

/// The rules for one write, as the worker's mutation callback applies them: a title
/// has 1 to [`MAX_TITLE_CHARS`] characters. `Err` is the reason shown to the user.
pub fn judge_write(operation: &MutationCallbackOperation) -> Result<(), String> {
    let check_title = |title: &str| match title.chars().count() {
        0 => Err("a todo needs a title".to_string()),
        n if n > MAX_TITLE_CHARS => {
            Err(format!("a title has at most {MAX_TITLE_CHARS} characters (this one has {n})"))
        }
        _ => Ok(()),
    };
    if let Some(args) = operation.args_as(&ADD_TODO) {
        check_title(&args?.title)
    } else if let Some(args) = operation.args_as(&RENAME_TODO) {
        check_title(&args?.title)
    } else if operation.args_as(&SET_DONE).is_some() || operation.args_as(&DELETE_TODO).is_some() {
        Ok(())
    } else {
        Err(format!("{} is not a todo operation", operation.operation_name))
    }
}

/// The rule for reads, as the worker's query callback applies it: a list whose id
/// starts with `locked-` has been locked by the app and cannot be read. `Err` is the
/// reason shown on the list.
pub fn judge_read(request: &QueryCallbackRequest) -> Result<(), String> {
    let Some(args) = request.args_as(&LIST_TODOS) else {
        return Err(format!("{} is not a todo query", request.operation_name));
    };
    let list = args?.list_id;
    if list.starts_with("locked-") { Err(format!("the list {list} is locked")) } else { Ok(()) }
}

/// List ids are what a URL segment holds without escaping.
pub fn clean_list_id(input: &str) -> Option<String> {
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
    use serde_json::json;
    use sync::model::MutationContext;

    fn ctx() -> MutationContext {
        MutationContext { client_id: "client_a".into(), record_id: "todos_1".into(), now_ms: 5 }
    }

    #[test]
    fn add_builds_an_open_item_in_its_list() {
        let write = todo_model()
            .validate_mutation(ADD_TODO.name(), &json!({"listId": " groceries ", "title": " milk "}), &ctx())
            .expect("valid");
        let sync::Operation::Insert(insert) = write.operation else { panic!("an insert") };
        assert_eq!(insert.values["list_id"], json!("groceries"));
        assert_eq!(insert.values["title"], json!("milk"));
        assert_eq!(insert.values["done"], json!(false));
    }

    #[test]
    fn updates_are_guarded_by_the_list() {
        let model = todo_model();
        let moved = model.validate_mutation(SET_DONE.name(), &json!({"listId": "a", "done": true}), &ctx());
        let sync::Operation::Update(update) = moved.expect("valid").operation else { panic!("an update") };
        assert!(update.guards.iter().any(|guard| guard.column == "list_id" && guard.value == json!("a")));
    }

    fn operation(name: &str, args: serde_json::Value) -> MutationCallbackOperation {
        MutationCallbackOperation {
            args,
            collection: TODOS.into(),
            id: "outbox_1".into(),
            mutation_kind: sync::model::MutationKind::Insert,
            operation_name: name.into(),
            record_id: "todos_1".into(),
        }
    }

    #[test]
    fn rules_refuse_empty_and_long_titles() {
        assert!(judge_write(&operation("addTodo", json!({"listId": "a", "title": "milk"}))).is_ok());
        assert!(judge_write(&operation("addTodo", json!({"listId": "a", "title": ""}))).is_err());
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        let renamed = judge_write(&operation("renameTodo", json!({"listId": "a", "title": long})));
        assert!(renamed.unwrap_err().contains("at most"));
        assert!(judge_write(&operation("dropTable", json!({}))).is_err());
    }

    #[test]
    fn a_locked_list_is_not_read() {
        let read = |list: &str| {
            judge_read(&QueryCallbackRequest::new(
                "client_a",
                "session_a",
                "listTodos",
                json!({"listId": list}),
            ))
        };
        assert!(read("groceries").is_ok());
        assert!(read("locked-groceries").unwrap_err().contains("locked"));
    }
}
