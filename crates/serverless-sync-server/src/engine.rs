//! [`Engine`]: the sync model and the app's callbacks, mounted as routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::routing::{get, post};
use futures_util::future::{Either, select};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sync::protocol::Decision;
use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::query_callback::QueryCallbackRequest;
use sync::{Query, SyncModel, ValidatedQuery};
use worker::Env;

use crate::callbacks::{CallbackError, Callbacks, Caller};
use crate::config::Config;
use crate::connector;
use crate::error::ApiError;
use crate::observe::Trace;
use crate::upstream::Upstream;

/// The engine for the request at hand, timing into its [`Trace`]: what the
/// connector's handlers take instead of `Extension<Engine>`.
pub struct TracedEngine(pub Engine);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TracedEngine {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let engine = parts.extensions.get::<Engine>().ok_or_else(|| ApiError::NotConfigured {
            reason: "the engine's routes are not mounted".into(),
        })?;
        Ok(TracedEngine(engine.traced(parts.extensions.get::<Trace>().cloned())))
    }
}

/// The engine as an app's worker holds it: its sync model, its callbacks, and the
/// PostgreSQL migrations of its tables. Cheap to clone.
///
/// ```ignore
/// let engine = Engine::new(my_model(), HttpCallbacks::or(MyRules))
///     .postgres_migrations(&[("0001_init", include_str!("../../migrations/postgres/0001_init.sql"))]);
/// let app = Router::new().merge(engine.routes()).route("/", get(home));
/// ```
#[derive(Clone)]
pub struct Engine {
    model: SyncModel,
    callbacks: Arc<dyn Callbacks>,
    postgres_migrations: Arc<[(&'static str, &'static str)]>,
    /// The request this engine serves, when it is one's (see [`crate::observe`]):
    /// upstream calls and callbacks add their time to it.
    trace: Option<Trace>,
}

impl Engine {
    pub fn new(model: SyncModel, callbacks: impl Callbacks) -> Self {
        Self { model, callbacks: Arc::new(callbacks), postgres_migrations: Arc::new([]), trace: None }
    }

    /// The app's own PostgreSQL migrations `(version, sql)`, in order. The engine
    /// applies them (after its own tables) on an isolate's first connection, under an
    /// advisory lock, recording each version in `sync_schema_migrations`. (On D1,
    /// `wrangler d1 migrations apply` applies the app's; the engine creates its own.)
    #[must_use]
    pub fn postgres_migrations(mut self, migrations: &[(&'static str, &'static str)]) -> Self {
        self.postgres_migrations = migrations.into();
        self
    }

    pub fn model(&self) -> &SyncModel {
        &self.model
    }

    /// This engine, timing its work into `trace`.
    pub(crate) fn traced(&self, trace: Option<Trace>) -> Self {
        Self { trace, ..self.clone() }
    }

    /// The request's trace, if this engine serves one.
    pub(crate) fn trace(&self) -> Option<&Trace> {
        self.trace.as_ref()
    }

    pub(crate) fn app_postgres_migrations(&self) -> &[(&'static str, &'static str)] {
        &self.postgres_migrations
    }

    /// The connector's routes: `POST /sync/query|push|pull|ticket`, `GET /sync/socket`,
    /// `GET /sync/health`, `GET /sync/admin/stats` (engine secret only), and a JSON 404 for any other `/sync/*` path. Merge them
    /// into the app's router and serve it with [`crate::serve`].
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/sync/query", post(connector::query::query))
            .route("/sync/push", post(connector::push::push))
            .route("/sync/pull", post(connector::pull::pull))
            .route("/sync/ticket", post(connector::socket::ticket))
            .route("/sync/socket", get(connector::socket::socket))
            .route("/sync/health", get(crate::health::health))
            .route("/sync/admin/stats", get(crate::stats::stats))
            .layer(Extension(self.clone()))
            .nest("/sync", Router::new().fallback(crate::error::api_not_found))
    }

    /// `GET` health probe for the app's router (`.route("/api/health", engine.health())`):
    /// 200 when the upstream answers and its tables match the model, else 503 with
    /// the reason (`schema_mismatch` names the missing tables and columns).
    pub fn health<S: Clone + Send + Sync + 'static>(&self) -> axum::routing::MethodRouter<S> {
        get(crate::health::health).layer(Extension(self.clone()))
    }

    /// Checks the named read `name(args)` against the model, then asks the app's query
    /// callback whether this client may run it, forwarding the user's `authorization`;
    /// a denial is a 403 with the callback's reason.
    pub async fn authorized_query(
        &self,
        env: &Env,
        authorization: Option<&str>,
        client_id: &str,
        session_id: &str,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<ValidatedQuery, ApiError> {
        match self.judge_query(env, authorization, client_id, session_id, name, args).await? {
            QueryVerdict::Allowed(query) => Ok(query),
            QueryVerdict::Refused { reason, .. } => Err(query_denied(reason)),
        }
    }

    /// Checks a named read against the model and asks the app's query callback: its
    /// answer, yes or no. `Err`: the read is malformed, or the app gave no answer.
    pub async fn judge_query(
        &self,
        env: &Env,
        authorization: Option<&str>,
        client_id: &str,
        session_id: &str,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<QueryVerdict, ApiError> {
        let query = self.model().validate_query(name, args)?;
        let ask = QueryCallbackRequest::new(client_id, session_id, &query.name, query.args.clone());
        let decision = self.ask_query(env, authorization, &ask).await?;
        if decision.allow {
            Ok(QueryVerdict::Allowed(query))
        } else {
            let reason =
                decision.reason.unwrap_or_else(|| format!("{} denied by the query callback", query.name));
            Ok(QueryVerdict::Refused { query, reason })
        }
    }

    /// A typed named read on the server (e.g. to render a page with its data), under
    /// the same model check and query callback as the connector. Rows come back as `R`.
    pub async fn read_query<A: Serialize, R: DeserializeOwned>(
        &self,
        env: &Env,
        authorization: Option<&str>,
        query: &Query<A, R>,
        args: &A,
    ) -> Result<Vec<R>, ApiError> {
        let validated = self.server_read(env, authorization, query, args).await?;
        self.read_rows(env, query, &validated).await
    }

    /// A server-side read checked against the model and put to the query callback.
    /// Each is its own client and session to the callbacks, so an app can tell them
    /// apart (and from browsers: nobody holds their keys).
    async fn server_read<A: Serialize, R>(
        &self,
        env: &Env,
        authorization: Option<&str>,
        query: &Query<A, R>,
        args: &A,
    ) -> Result<ValidatedQuery, ApiError> {
        let args = typed_args(args)?;
        let (client_id, session_id) = server_read_ids()?;
        self.authorized_query(env, authorization, &client_id, &session_id, query.name(), &args).await
    }

    /// A named read the server makes for itself, e.g. an app's callback looking up
    /// the data its rules need: checked against the model, but not put to the query
    /// callback (it is the callback's own read). Never hand its rows to a user
    /// without your own check.
    pub async fn read_trusted<A: Serialize, R: DeserializeOwned>(
        &self,
        env: &Env,
        query: &Query<A, R>,
        args: &A,
    ) -> Result<Vec<R>, ApiError> {
        let validated = self.model().validate_query(query.name(), &typed_args(args)?)?;
        self.read_rows(env, query, &validated).await
    }

    /// The last `rows` rows of a typed named read in its order (say, the newest
    /// posts of a board, to render a page), under the same model check and query
    /// callback as [`Self::read_query`].
    pub async fn read_query_last<A: Serialize, R: DeserializeOwned>(
        &self,
        env: &Env,
        authorization: Option<&str>,
        query: &Query<A, R>,
        args: &A,
        rows: u32,
    ) -> Result<Vec<R>, ApiError> {
        let validated = self.server_read(env, authorization, query, args).await?;
        let db = Upstream::open(self, env).await?;
        let (rows, _) = connector::query::read_last(self.model(), &db, &validated, rows).await?;
        query.decode_rows(rows).map_err(ApiError::upstream)
    }

    /// Runs a validated read upstream: its first page (at most as many rows as the
    /// connector answers at once), as `R`.
    async fn read_rows<A, R: DeserializeOwned>(
        &self,
        env: &Env,
        query: &Query<A, R>,
        validated: &ValidatedQuery,
    ) -> Result<Vec<R>, ApiError> {
        let db = Upstream::open(self, env).await?;
        let rows = connector::query::page_rows(self.model(), validated);
        let page = connector::query::read_page(self.model(), &db, validated, None, None, rows).await?;
        query.decode_rows(page.rows).map_err(ApiError::upstream)
    }

    pub(crate) async fn ask_query(
        &self,
        env: &Env,
        authorization: Option<&str>,
        request: &QueryCallbackRequest,
    ) -> Result<Decision, ApiError> {
        let config = Config::from_env(env)?;
        let caller = caller(env, &config, authorization);
        self.timed(with_timeout(&config, self.callbacks.query(&caller, request)))
            .await
            .map_err(|error| callback_failed("query", error))
    }

    /// Who the caller is, as the app says ([`Callbacks::subject`]); `None` when the
    /// app names no users.
    pub(crate) async fn subject(
        &self,
        env: &Env,
        authorization: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let config = Config::from_env(env)?;
        let caller = caller(env, &config, authorization);
        self.timed(with_timeout(&config, self.callbacks.subject(&caller)))
            .await
            .map_err(|error| callback_failed("subject", error))
    }

    pub(crate) async fn ask_mutation(
        &self,
        env: &Env,
        authorization: Option<&str>,
        request: &MutationCallbackRequest,
    ) -> Result<MutationCallbackResponse, ApiError> {
        let config = Config::from_env(env)?;
        let caller = caller(env, &config, authorization);
        self.timed(with_timeout(&config, self.callbacks.mutation(&caller, request)))
            .await
            .map_err(|error| callback_failed("mutation", error))
    }

    /// Runs a callback, adding its time to the request's trace.
    async fn timed<T>(&self, answer: impl std::future::Future<Output = T>) -> T {
        let started = crate::observe::clock_ms();
        let answer = answer.await;
        if let Some(trace) = &self.trace {
            trace.callback(crate::observe::clock_ms() - started);
        }
        answer
    }
}

/// A typed read's args as the model takes them.
fn typed_args<A: Serialize>(args: &A) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(args).map_err(|error| ApiError::bad_request("invalid_args", error.to_string()))
}

/// The app's answer to a named read.
pub enum QueryVerdict {
    Allowed(ValidatedQuery),
    Refused { query: ValidatedQuery, reason: String },
}

/// 403 `query_denied` with the app's reason.
pub fn query_denied(reason: String) -> ApiError {
    ApiError::Forbidden { code: "query_denied", reason }
}

/// A fresh client id (proven by a key nobody keeps) and session id.
fn server_read_ids() -> Result<(String, String), ApiError> {
    let mut random = [0u8; 42];
    getrandom::fill(&mut random).map_err(|error| ApiError::upstream(format!("no randomness: {error}")))?;
    let key: String = random[..32].iter().map(|byte| format!("{byte:02x}")).collect();
    let session = random[32..].iter().fold(0u128, |acc, byte| (acc << 8) | u128::from(*byte));
    let now = worker::Date::now().as_millis();
    Ok((sync::ids::client_id_for_key(&key), sync::ids::new_id(sync::ids::SESSION, now, session)))
}

fn caller(env: &Env, config: &Config, authorization: Option<&str>) -> Caller {
    Caller {
        env: env.clone(),
        authorization: authorization.map(str::to_string),
        engine_secret: config.engine_secret.clone(),
    }
}

/// A callback that gave no answer decides nothing: the client retries, or renews its
/// sign-in first.
pub fn callback_failed(kind: &str, error: CallbackError) -> ApiError {
    match error {
        CallbackError::Unavailable(reason) => {
            ApiError::CallbackUnavailable { reason: format!("{kind} callback failed: {reason}") }
        }
        CallbackError::NeedsAuth(reason) => ApiError::NeedsAuth { reason },
    }
}

async fn with_timeout<T>(
    config: &Config,
    answer: impl std::future::Future<Output = Result<T, CallbackError>>,
) -> Result<T, CallbackError> {
    let timeout = worker::Delay::from(Duration::from_millis(config.callback_timeout_ms));
    match select(Box::pin(answer), Box::pin(timeout)).await {
        Either::Left((answer, _)) => answer,
        Either::Right(_) => {
            Err(CallbackError::Unavailable(format!("no answer within {} ms", config.callback_timeout_ms)))
        }
    }
}
