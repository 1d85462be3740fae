//! The sync model: the contract shared by client and server. It names every read
//! (a query over one root collection with required predicates) and every write (a
//! mutator on one collection with required values), normalizes their args, builds
//! their operations from typed args, and checks what was built.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sync::{Collection, ColumnType, Insert, Operator, Order, Select, SyncModel};
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct BoardArgs { board_id: String }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct SendArgs { board_id: String, body: String }
//!
//! let model = SyncModel::builder()
//!     .collection(
//!         Collection::new("cards", "id")
//!             .column("id", ColumnType::Text)
//!             .column("board_id", ColumnType::Text)
//!             .column("body", ColumnType::Text),
//!     )
//!     .query(
//!         SyncModel::query::<BoardArgs>("boardCards", "cards")
//!             .require("boardId", "board_id", Operator::Eq)
//!             .build(|args| {
//!                 Select::from("cards")
//!                     .filter("board_id", Operator::Eq, args.board_id.clone())
//!                     .order_by("id", Order::Asc)
//!             }),
//!     )
//!     .mutator(
//!         SyncModel::insert::<SendArgs>("addCard", "cards")
//!             .require("boardId", "board_id")
//!             .build(|args, ctx| {
//!                 Insert::into("cards")
//!                     .value("id", ctx.record_id.clone())
//!                     .value("board_id", args.board_id.clone())
//!                     .value("body", args.body.clone())
//!             }),
//!     )
//!     .build()
//!     .expect("a valid model");
//!
//! let read = model.validate_query("boardCards", &serde_json::json!({"boardId": "r1"})).unwrap();
//! assert_eq!(read.topic.as_str(), r#"boardCards{"boardId":"r1"}"#);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Value;
use crate::changes::Topic;
use crate::operation::{Filter, Operation, Operator, Select};
use crate::schema::{
    Collection, ColumnType, ROUTED_VALUE_MAX_BYTES, Row, VALUE_MAX_BYTES, describe_value,
    is_valid_identifier, value_bytes,
};

/// Bytes a query's normalized args may take as JSON: they name a topic, kept per
/// watching session and in memos.
pub const QUERY_ARGS_MAX_BYTES: usize = 1024;

/// `arg` must be bound by a filter `column <operator> args[arg]` in every query built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredPredicate {
    pub arg: String,
    pub column: String,
    pub operator: Operator,
}

/// `column` must hold `args[arg]` in every record a mutator writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredValue {
    pub arg: String,
    pub column: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MutationKind {
    Insert,
    Update,
    Delete,
}

impl MutationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MutationKind::Insert => "insert",
            MutationKind::Update => "update",
            MutationKind::Delete => "delete",
        }
    }

    fn of(operation: &Operation) -> Self {
        match operation {
            Operation::Insert(_) => MutationKind::Insert,
            Operation::Update(_) => MutationKind::Update,
            Operation::Delete(_) => MutationKind::Delete,
        }
    }
}

impl fmt::Display for MutationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a mutator's build function may use besides its args.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationContext {
    /// The client that queued the write.
    pub client_id: String,
    /// The id of the record written (chosen by the client, a prefixed ULID).
    pub record_id: String,
    /// Milliseconds since the Unix epoch on the machine building the operation. The
    /// client uses its clock for the optimistic row; the server's version wins.
    pub now_ms: i64,
}

// ------------------------------------------------------------------ errors

/// A model that contradicts itself. Found once, at build time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("`{0}` is not a valid identifier (use [a-z_][a-z0-9_]*, not starting with `sync_`)")]
    InvalidIdentifier(String),
    #[error("collection `{0}` is declared twice")]
    DuplicateCollection(String),
    #[error("collection `{collection}` declares column `{column}` twice")]
    DuplicateColumn { collection: String, column: String },
    #[error("collection `{collection}`: primary key `{column}` must be a declared text column")]
    BadPrimaryKey { collection: String, column: String },
    #[error(
        "`{0}` is not a valid query or mutator name (use [A-Za-z][A-Za-z0-9_]*, at most 63 characters): names are written into topics and the database's capture triggers"
    )]
    InvalidOperationName(String),
    #[error("`{0}` is declared twice (query and mutator names share one namespace)")]
    DuplicateOperation(String),
    #[error("`{operation}` names unknown collection `{collection}`")]
    UnknownCollection { operation: String, collection: String },
    #[error("`{operation}` names unknown column `{collection}.{column}`")]
    UnknownColumn { operation: String, collection: String, column: String },
    #[error("`{0}` has no build function")]
    MissingBuild(String),
    #[error(
        "`{operation}` requires `{column} =` on a {column_type} column: equality-required predicates route changes by value and must be on text, integer or boolean columns"
    )]
    UnroutableColumn { operation: String, column: String, column_type: &'static str },
    #[error(
        "`{operation}` requires `{column} {operator}`: only equality predicates route changes to a query's topic, so pulls and pokes could not keep to it; require `=`, or filter on the page"
    )]
    UnroutedPredicate { operation: String, column: String, operator: &'static str },
}

/// Why a named read or write was refused before reaching the app's callback.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("unknown query `{0}`")]
    UnknownQuery(String),
    #[error("unknown mutator `{0}`")]
    UnknownMutator(String),
    #[error("`{operation}`: args must be a JSON object, got {got}")]
    ArgsNotObject { operation: String, got: &'static str },
    #[error("`{operation}`: missing arg `{arg}`")]
    MissingArg { operation: String, arg: String },
    #[error("`{operation}`: unknown arg `{arg}`")]
    UnknownArg { operation: String, arg: String },
    #[error("`{operation}`: arg `{arg}` is ill-typed: {detail}")]
    IllTypedArg { operation: String, arg: String, detail: String },
    #[error("`{operation}`: `{column}` holds {bytes} bytes, more than the {max} it may hold")]
    ValueTooLarge { operation: String, column: String, bytes: usize, max: usize },
    #[error(
        "`{operation}`: its args take {bytes} bytes as JSON, more than the {max} a query's args may take"
    )]
    ArgsTooLarge { operation: String, bytes: usize, max: usize },
    #[error("`{operation}`: the operation reads/writes `{actual}`, but the model allows only `{expected}`")]
    WrongCollection { operation: String, expected: String, actual: String },
    #[error("`{operation}`: the operation is a {actual}, but the mutator is declared as {expected}")]
    WrongKind { operation: String, expected: MutationKind, actual: MutationKind },
    #[error("`{operation}`: required predicate `{column} {operator} args.{arg}` is not in the query")]
    RequiredPredicateMissing { operation: String, arg: String, column: String, operator: &'static str },
    #[error("`{operation}`: required value `{column} = args.{arg}` is not satisfied")]
    RequiredValueMissing { operation: String, arg: String, column: String },
    #[error("`{operation}`: unknown column `{collection}.{column}`")]
    UnknownColumn { operation: String, collection: String, column: String },
    #[error("`{operation}`: column `{column}` is {expected}, got {actual}")]
    ColumnType { operation: String, column: String, expected: &'static str, actual: &'static str },
    #[error("`{operation}`: insert lacks column `{column}`")]
    MissingColumn { operation: String, column: String },
    #[error("`{operation}`: the operation targets record `{actual}`, not the mutation's record `{expected}`")]
    RecordIdMismatch { operation: String, expected: String, actual: String },
    #[error("`{operation}`: the primary key `{column}` cannot be updated")]
    PrimaryKeyUpdate { operation: String, column: String },
    #[error(
        "`{operation}`: the query filters on `{column}`, which no required equality predicate binds: pulls and pokes deliver a topic's changes whole, so the filter would not hold for them; make it a required predicate, or filter on the page"
    )]
    UnroutedFilter { operation: String, column: String },
}

impl ValidationError {
    /// A stable machine-readable code for HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::UnknownQuery(_) => "unknown_query",
            ValidationError::UnknownMutator(_) => "unknown_mutator",
            ValidationError::ArgsNotObject { .. }
            | ValidationError::MissingArg { .. }
            | ValidationError::UnknownArg { .. }
            | ValidationError::IllTypedArg { .. }
            | ValidationError::ValueTooLarge { .. }
            | ValidationError::ArgsTooLarge { .. } => "invalid_args",
            ValidationError::RequiredPredicateMissing { .. } => "required_predicate_missing",
            ValidationError::RequiredValueMissing { .. } => "required_value_missing",
            ValidationError::WrongCollection { .. }
            | ValidationError::WrongKind { .. }
            | ValidationError::UnknownColumn { .. }
            | ValidationError::ColumnType { .. }
            | ValidationError::MissingColumn { .. }
            | ValidationError::RecordIdMismatch { .. }
            | ValidationError::PrimaryKeyUpdate { .. } => "invalid_operation",
            ValidationError::UnroutedFilter { .. } => "unrouted_filter",
        }
    }
}

// ------------------------------------------------------------------ definitions

type NormalizeFn<A> = Arc<dyn Fn(A) -> A + Send + Sync>;
type BuildQueryFn<A> = Arc<dyn Fn(&A) -> Select + Send + Sync>;
type BuildMutationFn<A> = Arc<dyn Fn(&A, &MutationContext) -> Operation + Send + Sync>;
type QueryRun = dyn Fn(&Value) -> Result<(Value, Select), ArgsError> + Send + Sync;
type MutatorRun = dyn Fn(&Value, &MutationContext) -> Result<(Value, Operation), ArgsError> + Send + Sync;

/// Args decoding failures, before the operation name is attached.
enum ArgsError {
    NotObject(&'static str),
    Missing(String),
    Unknown(String),
    IllTyped { arg: String, detail: String },
}

impl ArgsError {
    fn named(self, operation: &str) -> ValidationError {
        let operation = operation.to_string();
        match self {
            ArgsError::NotObject(got) => ValidationError::ArgsNotObject { operation, got },
            ArgsError::Missing(arg) => ValidationError::MissingArg { operation, arg },
            ArgsError::Unknown(arg) => ValidationError::UnknownArg { operation, arg },
            ArgsError::IllTyped { arg, detail } => ValidationError::IllTypedArg { operation, arg, detail },
        }
    }
}

/// Decodes args into `A`, normalizes them, and re-encodes them as canonical JSON.
/// Keys of the input that do not survive the round trip are unknown args.
fn decode_args<A: DeserializeOwned + Serialize>(
    raw: &Value,
    normalize: Option<&(dyn Fn(A) -> A + Send + Sync)>,
) -> Result<(A, Value), ArgsError> {
    let Value::Object(input) = raw else {
        return Err(ArgsError::NotObject(describe_value(raw)));
    };
    let typed: A = serde_path_to_error::deserialize(raw).map_err(|error| {
        let path = error.path().to_string();
        let detail = error.into_inner().to_string();
        if let Some(rest) = detail.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            let arg = if path == "." { field.to_string() } else { format!("{path}.{field}") };
            ArgsError::Missing(arg)
        } else if let Some(rest) = detail.strip_prefix("unknown field `") {
            ArgsError::Unknown(rest.split('`').next().unwrap_or_default().to_string())
        } else {
            ArgsError::IllTyped { arg: path, detail }
        }
    })?;
    let canonical_before = serde_json::to_value(&typed)
        .map_err(|error| ArgsError::IllTyped { arg: ".".into(), detail: error.to_string() })?;
    if let Value::Object(known) = &canonical_before
        && let Some(extra) = input.keys().find(|key| !known.contains_key(*key))
    {
        return Err(ArgsError::Unknown(extra.clone()));
    }
    let typed = match normalize {
        Some(normalize) => normalize(typed),
        None => typed,
    };
    let normalized = serde_json::to_value(&typed)
        .map_err(|error| ArgsError::IllTyped { arg: ".".into(), detail: error.to_string() })?;
    Ok((typed, normalized))
}

/// A named read, type-erased.
#[derive(Clone)]
pub struct QueryDef {
    pub name: String,
    pub root_collection: String,
    pub required_predicates: Vec<RequiredPredicate>,
    run: Arc<QueryRun>,
}

impl fmt::Debug for QueryDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryDef")
            .field("name", &self.name)
            .field("root_collection", &self.root_collection)
            .field("required_predicates", &self.required_predicates)
            .finish_non_exhaustive()
    }
}

/// A named write, type-erased.
#[derive(Clone)]
pub struct MutatorDef {
    pub name: String,
    pub collection: String,
    pub kind: MutationKind,
    pub required_values: Vec<RequiredValue>,
    run: Arc<MutatorRun>,
}

impl fmt::Debug for MutatorDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutatorDef")
            .field("name", &self.name)
            .field("collection", &self.collection)
            .field("kind", &self.kind)
            .field("required_values", &self.required_values)
            .finish_non_exhaustive()
    }
}

/// Defines a named query with typed args `A`. See [`SyncModel::query`].
pub struct QueryBuilder<A> {
    name: String,
    root_collection: String,
    required_predicates: Vec<RequiredPredicate>,
    normalize: Option<NormalizeFn<A>>,
    build: Option<BuildQueryFn<A>>,
}

impl<A: DeserializeOwned + Serialize + 'static> QueryBuilder<A> {
    /// `arg` must appear as `column <operator> arg` in what `build` returns.
    #[must_use]
    pub fn require(mut self, arg: &str, column: &str, operator: Operator) -> Self {
        self.required_predicates.push(RequiredPredicate { arg: arg.into(), column: column.into(), operator });
        self
    }

    /// Cleans args before anything else sees them (trim, clamp, defaults).
    #[must_use]
    pub fn normalize(mut self, normalize: impl Fn(A) -> A + Send + Sync + 'static) -> Self {
        self.normalize = Some(Arc::new(normalize));
        self
    }

    #[must_use]
    pub fn build(mut self, build: impl Fn(&A) -> Select + Send + Sync + 'static) -> Self {
        self.build = Some(Arc::new(build));
        self
    }

    fn finish(self) -> Result<QueryDef, ModelError> {
        let build = self.build.ok_or_else(|| ModelError::MissingBuild(self.name.clone()))?;
        let normalize = self.normalize;
        let run = move |raw: &Value| {
            let (typed, normalized) = decode_args::<A>(raw, normalize.as_deref())?;
            Ok((normalized, build(&typed)))
        };
        Ok(QueryDef {
            name: self.name,
            root_collection: self.root_collection,
            required_predicates: self.required_predicates,
            run: Arc::new(run),
        })
    }
}

/// Defines a named mutator with typed args `A`. See [`SyncModel::insert`].
pub struct MutatorBuilder<A> {
    name: String,
    collection: String,
    kind: MutationKind,
    required_values: Vec<RequiredValue>,
    normalize: Option<NormalizeFn<A>>,
    build: Option<BuildMutationFn<A>>,
}

impl<A: DeserializeOwned + Serialize + 'static> MutatorBuilder<A> {
    /// `column` must hold `args[arg]`: set by an insert, guarded by an update/delete.
    #[must_use]
    pub fn require(mut self, arg: &str, column: &str) -> Self {
        self.required_values.push(RequiredValue { arg: arg.into(), column: column.into() });
        self
    }

    #[must_use]
    pub fn normalize(mut self, normalize: impl Fn(A) -> A + Send + Sync + 'static) -> Self {
        self.normalize = Some(Arc::new(normalize));
        self
    }

    /// Builds the write. Anything convertible to [`Operation`] (Insert, Update, Delete).
    #[must_use]
    pub fn build<O: Into<Operation>>(
        mut self,
        build: impl Fn(&A, &MutationContext) -> O + Send + Sync + 'static,
    ) -> Self {
        self.build = Some(Arc::new(move |args, ctx| build(args, ctx).into()));
        self
    }

    fn finish(self) -> Result<MutatorDef, ModelError> {
        let build = self.build.ok_or_else(|| ModelError::MissingBuild(self.name.clone()))?;
        let normalize = self.normalize;
        let run = move |raw: &Value, ctx: &MutationContext| {
            let (typed, normalized) = decode_args::<A>(raw, normalize.as_deref())?;
            Ok((normalized, build(&typed, ctx)))
        };
        Ok(MutatorDef {
            name: self.name,
            collection: self.collection,
            kind: self.kind,
            required_values: self.required_values,
            run: Arc::new(run),
        })
    }
}

impl From<crate::operation::Insert> for Operation {
    fn from(insert: crate::operation::Insert) -> Self {
        Operation::Insert(insert)
    }
}
impl From<crate::operation::Update> for Operation {
    fn from(update: crate::operation::Update) -> Self {
        Operation::Update(update)
    }
}
impl From<crate::operation::Delete> for Operation {
    fn from(delete: crate::operation::Delete) -> Self {
        Operation::Delete(delete)
    }
}

// ------------------------------------------------------------------ the model

/// Collects collections, queries and mutators; [`SyncModelBuilder::build`] checks them.
#[derive(Default)]
pub struct SyncModelBuilder {
    collections: Vec<Collection>,
    queries: Vec<Result<QueryDef, ModelError>>,
    mutators: Vec<Result<MutatorDef, ModelError>>,
}

impl SyncModelBuilder {
    #[must_use]
    pub fn collection(mut self, collection: Collection) -> Self {
        self.collections.push(collection);
        self
    }

    #[must_use]
    pub fn query<A: DeserializeOwned + Serialize + 'static>(mut self, query: QueryBuilder<A>) -> Self {
        self.queries.push(query.finish());
        self
    }

    #[must_use]
    pub fn mutator<A: DeserializeOwned + Serialize + 'static>(mut self, mutator: MutatorBuilder<A>) -> Self {
        self.mutators.push(mutator.finish());
        self
    }

    pub fn build(self) -> Result<SyncModel, ModelError> {
        let mut collections = BTreeMap::new();
        for collection in self.collections {
            check_identifier(&collection.name)?;
            let mut seen = BTreeSet::new();
            for column in &collection.columns {
                check_identifier(&column.name)?;
                if !seen.insert(column.name.as_str()) {
                    return Err(ModelError::DuplicateColumn {
                        collection: collection.name.clone(),
                        column: column.name.clone(),
                    });
                }
            }
            for column in collection.indexes.iter().flatten() {
                if !collection.has_column(column) {
                    return Err(ModelError::UnknownColumn {
                        operation: format!("index on {}", collection.name),
                        collection: collection.name.clone(),
                        column: column.clone(),
                    });
                }
            }
            for column in collection.max_bytes.keys() {
                if !collection.has_column(column) {
                    return Err(ModelError::UnknownColumn {
                        operation: format!("max_bytes on {}", collection.name),
                        collection: collection.name.clone(),
                        column: column.clone(),
                    });
                }
            }
            if collection.column_type(&collection.primary_key) != Some(ColumnType::Text) {
                return Err(ModelError::BadPrimaryKey {
                    collection: collection.name.clone(),
                    column: collection.primary_key.clone(),
                });
            }
            if collections.insert(collection.name.clone(), collection.clone()).is_some() {
                return Err(ModelError::DuplicateCollection(collection.name));
            }
        }
        let known_column = |operation: &str, collection: &str, column: &str| -> Result<(), ModelError> {
            let found = collections.get(collection).ok_or_else(|| ModelError::UnknownCollection {
                operation: operation.into(),
                collection: collection.into(),
            })?;
            if found.has_column(column) {
                Ok(())
            } else {
                Err(ModelError::UnknownColumn {
                    operation: operation.into(),
                    collection: collection.into(),
                    column: column.into(),
                })
            }
        };
        let mut names = BTreeSet::new();
        let mut queries = BTreeMap::new();
        for query in self.queries {
            let query = query?;
            let root =
                collections.get(&query.root_collection).ok_or_else(|| ModelError::UnknownCollection {
                    operation: query.name.clone(),
                    collection: query.root_collection.clone(),
                })?;
            known_column(&query.name, &query.root_collection, &root.primary_key)?;
            for predicate in &query.required_predicates {
                known_column(&query.name, &query.root_collection, &predicate.column)?;
                if predicate.operator != Operator::Eq {
                    return Err(ModelError::UnroutedPredicate {
                        operation: query.name.clone(),
                        column: predicate.column.clone(),
                        operator: predicate.operator.sql(),
                    });
                }
                // A topic holds the value as JSON, printed alike by the engine and by
                // the database's capture triggers only for these types (`1.0` vs `1`,
                // JSON key order): see crate::capture.
                let column_type = root.column_type(&predicate.column);
                if predicate.operator == Operator::Eq
                    && let Some(column_type @ (ColumnType::Real | ColumnType::Json)) = column_type
                {
                    return Err(ModelError::UnroutableColumn {
                        operation: query.name.clone(),
                        column: predicate.column.clone(),
                        column_type: column_type.name(),
                    });
                }
            }
            check_operation_name(&query.name)?;
            if !names.insert(query.name.clone()) {
                return Err(ModelError::DuplicateOperation(query.name));
            }
            queries.insert(query.name.clone(), query);
        }
        let mut mutators = BTreeMap::new();
        for mutator in self.mutators {
            let mutator = mutator?;
            if !collections.contains_key(&mutator.collection) {
                return Err(ModelError::UnknownCollection {
                    operation: mutator.name.clone(),
                    collection: mutator.collection.clone(),
                });
            }
            for value in &mutator.required_values {
                known_column(&mutator.name, &mutator.collection, &value.column)?;
            }
            check_operation_name(&mutator.name)?;
            if !names.insert(mutator.name.clone()) {
                return Err(ModelError::DuplicateOperation(mutator.name));
            }
            mutators.insert(mutator.name.clone(), mutator);
        }
        let mut routed: BTreeMap<String, BTreeSet<String>> = collections
            .values()
            .map(|collection| (collection.name.clone(), BTreeSet::from([collection.primary_key.clone()])))
            .collect();
        for query in queries.values() {
            let columns = routed.entry(query.root_collection.clone()).or_default();
            columns.extend(query.required_predicates.iter().map(|predicate| predicate.column.clone()));
        }
        Ok(SyncModel { inner: Arc::new(ModelInner { collections, queries, mutators, routed }) })
    }
}

/// Query and mutator names: letters, digits and `_`, starting with a letter, like the
/// collection names (camelCase allowed), so that they are safe inside SQL text.
fn check_operation_name(name: &str) -> Result<(), ModelError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid { Ok(()) } else { Err(ModelError::InvalidOperationName(name.into())) }
}

fn check_identifier(name: &str) -> Result<(), ModelError> {
    if is_valid_identifier(name) { Ok(()) } else { Err(ModelError::InvalidIdentifier(name.into())) }
}

struct ModelInner {
    collections: BTreeMap<String, Collection>,
    queries: BTreeMap<String, QueryDef>,
    mutators: BTreeMap<String, MutatorDef>,
    /// Per collection, the columns whose values end up in topics.
    routed: BTreeMap<String, BTreeSet<String>>,
}

/// The checked sync model. Cheap to clone; shared by everything that validates.
#[derive(Clone)]
pub struct SyncModel {
    inner: Arc<ModelInner>,
}

impl fmt::Debug for SyncModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncModel")
            .field("collections", &self.inner.collections.keys().collect::<Vec<_>>())
            .field("queries", &self.inner.queries.keys().collect::<Vec<_>>())
            .field("mutators", &self.inner.mutators.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A read that passed every check: normalized args, the select to run, its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedQuery {
    pub name: String,
    pub args: Value,
    pub select: Select,
    pub topic: Topic,
}

/// A write that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedMutation {
    pub name: String,
    pub args: Value,
    pub collection: String,
    pub kind: MutationKind,
    pub record_id: String,
    pub operation: Operation,
}

impl SyncModel {
    pub fn builder() -> SyncModelBuilder {
        SyncModelBuilder::default()
    }

    /// Starts a named query over `root_collection` with typed args `A`.
    pub fn query<A>(name: &str, root_collection: &str) -> QueryBuilder<A> {
        QueryBuilder {
            name: name.into(),
            root_collection: root_collection.into(),
            required_predicates: Vec::new(),
            normalize: None,
            build: None,
        }
    }

    pub fn mutator<A>(name: &str, collection: &str, kind: MutationKind) -> MutatorBuilder<A> {
        MutatorBuilder {
            name: name.into(),
            collection: collection.into(),
            kind,
            required_values: Vec::new(),
            normalize: None,
            build: None,
        }
    }

    pub fn insert<A>(name: &str, collection: &str) -> MutatorBuilder<A> {
        Self::mutator(name, collection, MutationKind::Insert)
    }

    pub fn update<A>(name: &str, collection: &str) -> MutatorBuilder<A> {
        Self::mutator(name, collection, MutationKind::Update)
    }

    pub fn delete<A>(name: &str, collection: &str) -> MutatorBuilder<A> {
        Self::mutator(name, collection, MutationKind::Delete)
    }

    pub fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.inner.collections.values()
    }

    /// The version of the local schema this model makes: a digest of its collections
    /// (names, columns, types, keys, indexes), 16 hex digits. A browser whose database
    /// was built by another version rebuilds its tables (see `sync-store`).
    pub fn schema_version(&self) -> String {
        use sha2::{Digest, Sha256};
        let collections: Vec<&Collection> = self.collections().collect();
        let text = serde_json::to_value(&collections)
            .map(|value| crate::changes::canonical_json(&value))
            .unwrap_or_default();
        Sha256::digest(text.as_bytes())[..8].iter().map(|byte| format!("{byte:02x}")).collect()
    }

    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.inner.collections.get(name)
    }

    pub fn queries(&self) -> impl Iterator<Item = &QueryDef> {
        self.inner.queries.values()
    }

    pub fn query_def(&self, name: &str) -> Option<&QueryDef> {
        self.inner.queries.get(name)
    }

    pub fn mutators(&self) -> impl Iterator<Item = &MutatorDef> {
        self.inner.mutators.values()
    }

    pub fn mutator_def(&self, name: &str) -> Option<&MutatorDef> {
        self.inner.mutators.get(name)
    }

    /// Checks a named read and builds its select.
    pub fn validate_query(&self, name: &str, args: &Value) -> Result<ValidatedQuery, ValidationError> {
        let query = self.query_def(name).ok_or_else(|| ValidationError::UnknownQuery(name.into()))?;
        let (args, select) = (query.run)(args).map_err(|error| error.named(name))?;
        let collection = self.expect_collection(name, &query.root_collection, &select.collection)?;
        for filter in &select.filters {
            self.check_value(name, collection, &filter.column, &filter.value)?;
            // Pulls and pokes deliver a topic's changes whole: a filter is only sound
            // when the topic itself pins it (a required equality on its value).
            let routed = filter.operator == Operator::Eq
                && query.required_predicates.iter().any(|predicate| {
                    predicate.column == filter.column
                        && predicate.operator == Operator::Eq
                        && args.get(&predicate.arg) == Some(&filter.value)
                });
            if !routed {
                return Err(ValidationError::UnroutedFilter {
                    operation: name.into(),
                    column: filter.column.clone(),
                });
            }
        }
        for (column, _) in &select.order_by {
            check_column(name, collection, column)?;
        }
        for predicate in &query.required_predicates {
            let bound = args.get(&predicate.arg);
            let present = select.filters.iter().any(|filter| {
                filter.column == predicate.column
                    && filter.operator == predicate.operator
                    && Some(&filter.value) == bound
            });
            if !present {
                return Err(ValidationError::RequiredPredicateMissing {
                    operation: name.into(),
                    arg: predicate.arg.clone(),
                    column: predicate.column.clone(),
                    operator: predicate.operator.sql(),
                });
            }
        }
        // Each value was in bounds; the args as a whole must be too.
        let args_bytes = value_bytes(&args);
        if args_bytes > QUERY_ARGS_MAX_BYTES {
            return Err(ValidationError::ArgsTooLarge {
                operation: name.into(),
                bytes: args_bytes,
                max: QUERY_ARGS_MAX_BYTES,
            });
        }
        let topic = Topic::for_query(query, &args);
        Ok(ValidatedQuery { name: name.into(), args, select, topic })
    }

    /// Checks a named write and builds its operation.
    pub fn validate_mutation(
        &self,
        name: &str,
        args: &Value,
        ctx: &MutationContext,
    ) -> Result<ValidatedMutation, ValidationError> {
        let mutator = self.mutator_def(name).ok_or_else(|| ValidationError::UnknownMutator(name.into()))?;
        let (args, mut operation) = (mutator.run)(args, ctx).map_err(|error| error.named(name))?;
        let collection = self.expect_collection(name, &mutator.collection, operation.collection())?;
        let actual_kind = MutationKind::of(&operation);
        if actual_kind != mutator.kind {
            return Err(ValidationError::WrongKind {
                operation: name.into(),
                expected: mutator.kind,
                actual: actual_kind,
            });
        }
        let required = |value: &crate::model::RequiredValue| -> Result<&Value, ValidationError> {
            args.get(&value.arg)
                .ok_or_else(|| ValidationError::MissingArg { operation: name.into(), arg: value.arg.clone() })
        };
        let mismatch = |actual: &str| ValidationError::RecordIdMismatch {
            operation: name.into(),
            expected: ctx.record_id.clone(),
            actual: actual.into(),
        };
        match &mut operation {
            Operation::Insert(insert) => {
                // The record id is the primary key; fill it in when the build left it out.
                let key = insert
                    .values
                    .entry(collection.primary_key.clone())
                    .or_insert_with(|| Value::String(ctx.record_id.clone()));
                if key.as_str() != Some(ctx.record_id.as_str()) {
                    return Err(mismatch(&key.to_string()));
                }
                for (column, value) in &insert.values {
                    self.check_value(name, collection, column, value)?;
                }
                if let Some(column) = collection.columns.iter().find(|c| !insert.values.contains_key(&c.name))
                {
                    return Err(ValidationError::MissingColumn {
                        operation: name.into(),
                        column: column.name.clone(),
                    });
                }
                for value in &mutator.required_values {
                    if insert.values.get(&value.column) != Some(required(value)?) {
                        return Err(required_value_missing(name, value));
                    }
                }
            }
            Operation::Update(update) => {
                if update.record_id != ctx.record_id {
                    return Err(mismatch(&update.record_id));
                }
                for (column, value) in &update.set {
                    if *column == collection.primary_key {
                        return Err(ValidationError::PrimaryKeyUpdate {
                            operation: name.into(),
                            column: column.clone(),
                        });
                    }
                    self.check_value(name, collection, column, value)?;
                }
                self.check_guards(name, collection, &update.guards)?;
                for value in &mutator.required_values {
                    let expected = required(value)?;
                    let guarded = has_eq_guard(&update.guards, &value.column, expected);
                    let kept = update.set.get(&value.column).is_none_or(|set| set == expected);
                    if !guarded || !kept {
                        return Err(required_value_missing(name, value));
                    }
                }
            }
            Operation::Delete(delete) => {
                if delete.record_id != ctx.record_id {
                    return Err(mismatch(&delete.record_id));
                }
                self.check_guards(name, collection, &delete.guards)?;
                for value in &mutator.required_values {
                    if !has_eq_guard(&delete.guards, &value.column, required(value)?) {
                        return Err(required_value_missing(name, value));
                    }
                }
            }
        }
        Ok(ValidatedMutation {
            name: name.into(),
            args,
            collection: mutator.collection.clone(),
            kind: mutator.kind,
            record_id: ctx.record_id.clone(),
            operation,
        })
    }

    /// Topics a row image belongs to: for every query rooted at `collection`, the
    /// query's name with the row's values for its equality-required predicates.
    pub fn topics_for_row(&self, collection: &str, row: &Row) -> Vec<Topic> {
        self.queries()
            .filter(|query| query.root_collection == collection)
            .filter_map(|query| Topic::for_row(query, row))
            .collect()
    }

    /// The most bytes a value of `collection.column` may hold: the collection's own
    /// limit for it, else [`ROUTED_VALUE_MAX_BYTES`] for a record id or a column some
    /// query requires by equality, else [`VALUE_MAX_BYTES`].
    pub fn value_limit(&self, collection: &Collection, column: &str) -> usize {
        if let Some(max) = collection.max_bytes.get(column) {
            return *max;
        }
        let routed = self.inner.routed.get(&collection.name).is_some_and(|columns| columns.contains(column));
        if routed { ROUTED_VALUE_MAX_BYTES } else { VALUE_MAX_BYTES }
    }

    /// Checks a value of `collection.column` as a read or write of `operation` would:
    /// the column exists, its type accepts the value, and the value is within the
    /// column's limit ([`Self::value_limit`]).
    pub fn check_value(
        &self,
        operation: &str,
        collection: &Collection,
        column: &str,
        value: &Value,
    ) -> Result<(), ValidationError> {
        let column_type = check_column(operation, collection, column)?;
        if !column_type.accepts(value) {
            return Err(ValidationError::ColumnType {
                operation: operation.into(),
                column: column.into(),
                expected: column_type.name(),
                actual: describe_value(value),
            });
        }
        let max = self.value_limit(collection, column);
        let bytes = value_bytes(value);
        if bytes > max {
            return Err(ValidationError::ValueTooLarge {
                operation: operation.into(),
                column: column.into(),
                bytes,
                max,
            });
        }
        Ok(())
    }

    fn check_guards(
        &self,
        operation: &str,
        collection: &Collection,
        guards: &[Filter],
    ) -> Result<(), ValidationError> {
        guards
            .iter()
            .try_for_each(|guard| self.check_value(operation, collection, &guard.column, &guard.value))
    }

    fn expect_collection(
        &self,
        operation: &str,
        expected: &str,
        actual: &str,
    ) -> Result<&Collection, ValidationError> {
        if expected != actual {
            return Err(ValidationError::WrongCollection {
                operation: operation.into(),
                expected: expected.into(),
                actual: actual.into(),
            });
        }
        // Presence was checked when the model was built.
        self.collection(expected).ok_or_else(|| ValidationError::WrongCollection {
            operation: operation.into(),
            expected: expected.into(),
            actual: actual.into(),
        })
    }
}

fn required_value_missing(operation: &str, value: &RequiredValue) -> ValidationError {
    ValidationError::RequiredValueMissing {
        operation: operation.into(),
        arg: value.arg.clone(),
        column: value.column.clone(),
    }
}

fn has_eq_guard(guards: &[Filter], column: &str, expected: &Value) -> bool {
    guards
        .iter()
        .any(|guard| guard.column == column && guard.operator == Operator::Eq && guard.value == *expected)
}

fn check_column(
    operation: &str,
    collection: &Collection,
    column: &str,
) -> Result<ColumnType, ValidationError> {
    collection.column_type(column).ok_or_else(|| ValidationError::UnknownColumn {
        operation: operation.into(),
        collection: collection.name.clone(),
        column: column.into(),
    })
}
