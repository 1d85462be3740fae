//! Typed handles for named queries and mutators, declared once by an app as constants
//! and used by both sides: the model definition (`BOARD.define()...`) and the client
//! hooks (`use_query(&BOARD, ...)`, `use_mutator(&SEND)`). The wire format stays the
//! name plus JSON args; these types only make the args and rows checked by the
//! compiler.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sync::typed::{Inserts, Mutator, Query};
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! pub struct ListArgs { pub list_id: String }
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Item { pub id: String, pub list_id: String, pub title: String }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! pub struct AddItem { pub list_id: String, pub title: String }
//!
//! pub const LIST_ITEMS: Query<ListArgs, Item> = Query::new("listItems", "items");
//! pub const ADD_ITEM: Mutator<AddItem, Inserts> = Mutator::insert("addItem", "items");
//! assert_eq!(ADD_ITEM.name(), "addItem");
//! ```

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::{MutationKind, MutatorBuilder, QueryBuilder, SyncModel};
use crate::schema::Row;

/// A named read with args `A` whose rows decode into `R`.
pub struct Query<A, R> {
    name: &'static str,
    collection: &'static str,
    types: PhantomData<fn(A) -> R>,
}

impl<A, R> Query<A, R> {
    /// `name` over the root collection `collection`.
    pub const fn new(name: &'static str, collection: &'static str) -> Self {
        Self { name, collection, types: PhantomData }
    }

    pub const fn name(&self) -> &'static str {
        self.name
    }

    pub const fn collection(&self) -> &'static str {
        self.collection
    }
}

impl<A, R: DeserializeOwned> Query<A, R> {
    /// Rows as the engine hands them over (column name -> JSON) decoded as `R`; `Err`
    /// names this query and the row that does not fit.
    pub fn decode_rows(&self, rows: Vec<Row>) -> Result<Vec<R>, String> {
        rows.iter().map(|row| self.decode_row(row)).collect()
    }

    /// One row decoded as `R`, read in place (no copy of the row).
    pub fn decode_row(&self, row: &Row) -> Result<R, String> {
        let fields = row.iter().map(|(column, value)| (column.as_str(), value));
        R::deserialize(serde::de::value::MapDeserializer::<_, serde_json::Error>::new(fields))
            .map_err(|error| format!("a {} row does not decode: {error}", self.name))
    }
}

impl<A: DeserializeOwned + Serialize + 'static, R> Query<A, R> {
    /// Starts this query's definition in the model (required predicates, build).
    pub fn define(&self) -> QueryBuilder<A> {
        SyncModel::query::<A>(self.name, self.collection)
    }
}

// Manual impls: derives would demand `A: Clone` etc., but only names are held.
impl<A, R> Clone for Query<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A, R> Copy for Query<A, R> {}
impl<A, R> fmt::Debug for Query<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query").field("name", &self.name).field("collection", &self.collection).finish()
    }
}

/// Marker: the mutator inserts a new record (its id is minted by the client).
#[derive(Debug, Clone, Copy)]
pub struct Inserts;
/// Marker: the mutator updates an existing record, named by its id.
#[derive(Debug, Clone, Copy)]
pub struct Updates;
/// Marker: the mutator deletes an existing record, named by its id.
#[derive(Debug, Clone, Copy)]
pub struct Deletes;

/// The kind a marker stands for.
pub trait Kind: Copy + Send + Sync + 'static {
    const KIND: MutationKind;
}
impl Kind for Inserts {
    const KIND: MutationKind = MutationKind::Insert;
}
impl Kind for Updates {
    const KIND: MutationKind = MutationKind::Update;
}
impl Kind for Deletes {
    const KIND: MutationKind = MutationKind::Delete;
}

/// A named write with args `A`, of kind `K` ([`Inserts`], [`Updates`], [`Deletes`]).
pub struct Mutator<A, K> {
    name: &'static str,
    collection: &'static str,
    types: PhantomData<fn(A) -> K>,
}

impl<A> Mutator<A, Inserts> {
    pub const fn insert(name: &'static str, collection: &'static str) -> Self {
        Self { name, collection, types: PhantomData }
    }
}

impl<A> Mutator<A, Updates> {
    pub const fn update(name: &'static str, collection: &'static str) -> Self {
        Self { name, collection, types: PhantomData }
    }
}

impl<A> Mutator<A, Deletes> {
    pub const fn delete(name: &'static str, collection: &'static str) -> Self {
        Self { name, collection, types: PhantomData }
    }
}

impl<A, K: Kind> Mutator<A, K> {
    pub const fn name(&self) -> &'static str {
        self.name
    }

    pub const fn collection(&self) -> &'static str {
        self.collection
    }

    pub const fn kind(&self) -> MutationKind {
        K::KIND
    }
}

impl<A: DeserializeOwned + Serialize + 'static, K: Kind> Mutator<A, K> {
    /// Starts this mutator's definition in the model (required values, build).
    pub fn define(&self) -> MutatorBuilder<A> {
        SyncModel::mutator::<A>(self.name, self.collection, K::KIND)
    }
}

impl<A, K> Clone for Mutator<A, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A, K> Copy for Mutator<A, K> {}
impl<A, K: Kind> fmt::Debug for Mutator<A, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutator")
            .field("name", &self.name)
            .field("collection", &self.collection)
            .field("kind", &K::KIND)
            .finish()
    }
}

/// The app's callbacks read a request's args as the typed struct of the query or
/// mutator it names: `Some` when it names that one (`None`: another), then the args
/// or why they do not fit `A` (they were checked against the model already, so only a
/// struct that disagrees with the model fails).
impl crate::protocol::query_callback::QueryCallbackRequest {
    pub fn args_as<A: DeserializeOwned, R>(&self, query: &Query<A, R>) -> Option<Result<A, String>> {
        (self.operation_name == query.name()).then(|| typed_args(query.name(), &self.args))
    }
}

impl crate::protocol::mutation_callback::MutationCallbackOperation {
    /// See [`QueryCallbackRequest::args_as`](crate::protocol::query_callback::QueryCallbackRequest::args_as).
    pub fn args_as<A: DeserializeOwned, K: Kind>(
        &self,
        mutator: &Mutator<A, K>,
    ) -> Option<Result<A, String>> {
        (self.operation_name == mutator.name()).then(|| typed_args(mutator.name(), &self.args))
    }
}

fn typed_args<A: DeserializeOwned>(name: &str, args: &crate::Value) -> Result<A, String> {
    A::deserialize(args).map_err(|error| format!("{name}: its args do not fit the app's type: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Collection, ColumnType, Insert, Operator, Select, Update};
    use serde::Deserialize;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ListArgs {
        list_id: String,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Rename {
        list_id: String,
        title: String,
    }

    struct Item;

    const ITEMS: Query<ListArgs, Item> = Query::new("listItems", "items");
    const ADD: Mutator<Rename, Inserts> = Mutator::insert("addItem", "items");
    const RENAME: Mutator<Rename, Updates> = Mutator::update("renameItem", "items");

    #[test]
    fn typed_handles_define_the_model_under_their_names() {
        let model =
            SyncModel::builder()
                .collection(
                    Collection::new("items", "id")
                        .column("id", ColumnType::Text)
                        .column("list_id", ColumnType::Text)
                        .column("title", ColumnType::Text),
                )
                .query(ITEMS.define().require("listId", "list_id", Operator::Eq).build(|args| {
                    Select::from("items").filter("list_id", Operator::Eq, args.list_id.clone())
                }))
                .mutator(ADD.define().require("listId", "list_id").build(|args, ctx| {
                    Insert::into("items")
                        .value("id", ctx.record_id.clone())
                        .value("list_id", args.list_id.clone())
                        .value("title", args.title.clone())
                }))
                .mutator(RENAME.define().require("listId", "list_id").build(|args, ctx| {
                    Update::record("items", ctx.record_id.clone()).set("title", args.title.clone()).guard(
                        "list_id",
                        Operator::Eq,
                        args.list_id.clone(),
                    )
                }))
                .build()
                .expect("valid model");
        assert_eq!(model.query_def(ITEMS.name()).map(|q| q.root_collection.as_str()), Some("items"));
        assert_eq!(model.mutator_def(ADD.name()).map(|m| m.kind), Some(MutationKind::Insert));
        assert_eq!(model.mutator_def(RENAME.name()).map(|m| m.kind), Some(RENAME.kind()));
        assert_eq!(RENAME.collection(), "items");
    }

    #[test]
    fn callbacks_read_args_as_the_struct_of_the_operation_they_name() {
        use crate::protocol::mutation_callback::MutationCallbackOperation;
        use crate::protocol::query_callback::QueryCallbackRequest;
        let request = QueryCallbackRequest::new(
            "client_1",
            "session_1",
            "listItems",
            serde_json::json!({"listId": "l1"}),
        );
        let args = request.args_as(&ITEMS).expect("names listItems").expect("fits ListArgs");
        assert_eq!(args.list_id, "l1");
        let operation = MutationCallbackOperation {
            args: serde_json::json!({"listId": "l1", "title": "milk"}),
            collection: "items".into(),
            id: "outbox_1".into(),
            mutation_kind: MutationKind::Update,
            operation_name: "renameItem".into(),
            record_id: "items_1".into(),
        };
        assert!(operation.args_as(&ADD).is_none(), "another mutator's args are not read");
        let renamed = operation.args_as(&RENAME).expect("names renameItem").expect("fits Rename");
        assert_eq!((renamed.list_id.as_str(), renamed.title.as_str()), ("l1", "milk"));
        let wrong = MutationCallbackOperation { args: serde_json::json!({"listId": 5}), ..operation };
        let error = wrong.args_as(&RENAME).expect("names renameItem").err().expect("does not fit");
        assert!(error.starts_with("renameItem: its args do not fit"), "{error}");
    }
}
