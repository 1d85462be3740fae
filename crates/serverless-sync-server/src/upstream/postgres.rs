//! PostgreSQL through Hyperdrive: tokio-postgres over the worker's TCP socket. Locally,
//! wrangler stands in for Hyperdrive with a proxy to the binding's
//! `localConnectionString` (or `CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE`).
//!
//! One connection per request (an I/O object cannot outlive its request in workerd;
//! Hyperdrive pools the connections to the origin). Statements are sent as unnamed,
//! typed statements (`query_typed`: one round trip each, no prepared-statement cache
//! needed), and a transaction's statements are pipelined: sent together, answered in
//! order.

use std::cell::Cell;

use serde_json::Value;
use sync::sql::{Dialect, POSTGRES_CHANGE_LOG_LOCK, SqlParam, Statement};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage};
use worker::postgres_tls::PassthroughTls;
use worker::{Env, Socket};

use super::{Database, RawRow};
use crate::error::ApiError;

/// The Hyperdrive binding's name in the wrangler config.
pub const BINDING: &str = "HYPERDRIVE";

/// The engine's own tables, recorded under this version before the app's migrations.
/// Every statement is `IF NOT EXISTS`: a new version re-runs the whole schema, which
/// adds what an older version lacked (0002: the compaction mark and record index).
const ENGINE_MIGRATION: &str = "sync_engine_0002";

/// Advisory-lock key held while migrating: ASCII "syncMIGR".
const MIGRATION_LOCK: i64 = 0x7379_6e63_4d49_4752;

thread_local! {
    /// Migrations are checked once per isolate.
    static MIGRATED: Cell<bool> = const { Cell::new(false) };
}

pub struct Postgres {
    client: Client,
    /// Ends the connection's task when this request is done with it (see [`Drop`]).
    connection: Option<futures_util::future::AbortHandle>,
    /// The connection's TCP socket, closed with it (see [`Drop`]).
    socket: Option<worker::worker_sys::Socket>,
}

impl Drop for Postgres {
    /// Left to itself, the connection's task would wait forever on a socket whose
    /// request has ended (workerd resolves none of its promises any more), keeping its
    /// buffers: about 18 KB of the isolate's memory per request, measured. Aborted, it
    /// ends at its next poll. The socket is closed here too: workerd closes it with an
    /// HTTP request, but a Durable Object (a push on a session's socket) outlives its
    /// events, and an unclosed socket kept its PostgreSQL backend: 500 pushes ran the
    /// server out of connections ("too many clients already").
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.abort();
        }
        if let Some(socket) = self.socket.take() {
            // Closing a socket that is closing or gone is no news.
            let _ = socket.close();
        }
    }
}

/// A TCP socket to `host:port` that will upgrade to TLS (`secureTransport: starttls`,
/// as `Socket::builder().secure_transport(SecureTransport::StartTls)` opens it), as the
/// runtime's own object.
fn raw_socket(host: &str, port: u16) -> Result<worker::worker_sys::Socket, worker::wasm_bindgen::JsValue> {
    use worker::js_sys::{Object, Reflect};
    let address = Object::new();
    Reflect::set(&address, &"hostname".into(), &host.into())?;
    Reflect::set(&address, &"port".into(), &port.into())?;
    let options = Object::new();
    Reflect::set(&options, &"allowHalfOpen".into(), &false.into())?;
    Reflect::set(&options, &"secureTransport".into(), &"starttls".into())?;
    worker::worker_sys::connect(address.into(), options.into())
}

/// The database's own words for a failure (tokio-postgres' Display is only "db error"),
/// or the error with its cause.
fn describe(error: &tokio_postgres::Error) -> String {
    match (error.as_db_error(), std::error::Error::source(error)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{error}: {cause}"),
        (None, None) => error.to_string(),
    }
}

/// A failed statement: an integrity or data error is the statement's own fault
/// (a refusal); anything else (the connection, a timeout, a lock) is transient.
fn upstream(error: &tokio_postgres::Error) -> ApiError {
    let code = error.code().map(tokio_postgres::error::SqlState::code);
    ApiError::write_failure(sync::push::classify_postgres_failure(code, &describe(error)))
}

impl Postgres {
    /// Opens a connection through the Hyperdrive binding and makes sure the schema is
    /// current.
    pub async fn connect(env: &Env, app_migrations: &[(&str, &str)]) -> Result<Self, ApiError> {
        let db = Self::connect_bare(env).await?;
        if !MIGRATED.with(Cell::get) {
            let engine = sync::sql::engine_schema(Dialect::Postgres).join(";\n");
            let mut migrations = vec![(ENGINE_MIGRATION, engine.as_str())];
            migrations.extend(app_migrations.iter().copied());
            db.migrate(&migrations).await?;
            MIGRATED.with(|done| done.set(true));
        }
        Ok(db)
    }

    /// A connection through the Hyperdrive binding, schema untouched.
    pub async fn connect_bare(env: &Env) -> Result<Self, ApiError> {
        let not_configured = |detail: String| ApiError::NotConfigured {
            reason: format!(
                "SYNC_UPSTREAM is postgres, but the Hyperdrive binding {BINDING} is unusable: {detail}"
            ),
        };
        let hyperdrive = env.hyperdrive(BINDING).map_err(|error| not_configured(error.to_string()))?;
        let config: tokio_postgres::Config =
            hyperdrive.connection_string().parse().map_err(|error| not_configured(format!("{error}")))?;
        // The raw socket, kept to close it when done (`Socket` does not close on drop).
        let raw = raw_socket(&hyperdrive.host(), hyperdrive.port()).map_err(|error| {
            ApiError::UpstreamUnavailable { reason: format!("connecting to Hyperdrive: {error:?}") }
        })?;
        let socket = Socket::from(raw.clone());
        let (client, connection) = config.connect_raw(socket, PassthroughTls).await.map_err(|error| {
            ApiError::UpstreamUnavailable {
                reason: format!("connecting to PostgreSQL: {}", describe(&error)),
            }
        })?;
        // The connection's task lives as long as the client (see `Drop`).
        let (connection, abort) = futures_util::future::abortable(connection);
        worker::wasm_bindgen_futures::spawn_local(async move {
            if let Ok(Err(error)) = connection.await {
                worker::console_error!("PostgreSQL connection: {}", describe(&error));
            }
        });
        Ok(Self { client, connection: Some(abort), socket: Some(raw) })
    }

    /// Natively (tests, the simulation): a connection to `url` (no TLS) whose I/O runs
    /// on `runtime`, with the engine's tables and then `app_migrations` applied, as
    /// [`Self::connect`] does through Hyperdrive.
    #[cfg(not(target_family = "wasm"))]
    pub async fn connect_native(
        runtime: &tokio::runtime::Runtime,
        url: &str,
        app_migrations: &[(&str, &str)],
    ) -> Result<Self, ApiError> {
        let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
        let (client, connection) =
            runtime.block_on(connecting).map_err(|error| ApiError::UpstreamUnavailable {
                reason: format!("connecting to PostgreSQL: {}", describe(&error)),
            })?;
        runtime.spawn(async move {
            let _ = connection.await;
        });
        let db = Self { client, connection: None, socket: None };
        let engine = sync::sql::engine_schema(Dialect::Postgres).join(";\n");
        let mut migrations = vec![(ENGINE_MIGRATION, engine.as_str())];
        migrations.extend(app_migrations.iter().copied());
        db.migrate(&migrations).await?;
        Ok(db)
    }

    /// Applies the migrations this database lacks, one transaction, one migrator at a
    /// time.
    async fn migrate(&self, migrations: &[(&str, &str)]) -> Result<(), ApiError> {
        let fail =
            |error: tokio_postgres::Error| ApiError::upstream(format!("migrating: {}", describe(&error)));
        self.client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); \
                 CREATE TABLE IF NOT EXISTS sync_schema_migrations (\
                   version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ))
            .await
            .map_err(fail)?;
        let applied: Vec<String> = self
            .client
            .query_typed("SELECT version FROM sync_schema_migrations", &[])
            .await
            .map_err(fail)?
            .iter()
            .map(|row| row.try_get::<_, String>(0))
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        for (version, sql) in migrations {
            if applied.iter().any(|done| done == version) {
                continue;
            }
            self.client.batch_execute(sql).await.map_err(fail)?;
            self.client
                .query_typed(
                    "INSERT INTO sync_schema_migrations (version) VALUES ($1)",
                    &[(version, Type::TEXT)],
                )
                .await
                .map_err(fail)?;
            #[cfg(target_family = "wasm")]
            worker::console_log!("PostgreSQL: applied migration {version}");
        }
        self.client.batch_execute("COMMIT").await.map_err(fail)
    }

    async fn run(&self, statement: &Statement) -> Result<Vec<RawRow>, tokio_postgres::Error> {
        let params: Vec<(&(dyn ToSql + Sync), Type)> = statement.params.iter().map(typed).collect();
        let rows = self.client.query_typed(&statement.sql, &params).await?;
        rows.iter().map(raw_row).collect()
    }

    /// `begin`, the statements, then COMMIT; the first failure rolls it all back.
    /// Up to [`PIPELINE_FROM`] statements go one at a time; more are sent together
    /// (see there).
    async fn transaction(&self, begin: &str, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        if statements.len() >= PIPELINE_FROM {
            return self.pipelined_transaction(begin, statements).await;
        }
        if let Err(error) = self.client.batch_execute(begin).await {
            // A BEGIN that got through leaves a failed transaction behind it.
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(upstream(&error));
        }
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            match self.run(statement).await {
                Ok(rows) => results.push(rows),
                Err(error) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    return Err(upstream(&error));
                }
            }
        }
        if let Err(error) = self.client.batch_execute("COMMIT").await {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(upstream(&error));
        }
        Ok(results)
    }

    /// A write transaction in one round trip: BEGIN, its timeouts, the change-log lock,
    /// the statements (parameters written as literals, [`inline`]) and COMMIT, sent as
    /// one simple query. The lock is held for the database's own work only, never
    /// across a round trip; a failure rolls back (one more round trip, failures only).
    async fn write_in_one_trip(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        let mut text = write_prelude();
        for statement in statements {
            text.push_str(";\n");
            text.push_str(&inline(statement)?);
        }
        text.push_str(";\nCOMMIT");
        let answers = match self.client.simple_query(&text).await {
            Ok(answers) => answers,
            Err(error) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(upstream(&error));
            }
        };
        let mut results: Vec<Vec<RawRow>> = Vec::new();
        let mut current: Vec<RawRow> = Vec::new();
        for answer in answers {
            match answer {
                SimpleQueryMessage::Row(row) => current.push(simple_row(&row)),
                SimpleQueryMessage::CommandComplete(_) => results.push(std::mem::take(&mut current)),
                _ => {}
            }
        }
        // One result per statement: the prelude's first, COMMIT's last.
        let expected = WRITE_PRELUDE_STATEMENTS + statements.len() + 1;
        if results.len() != expected {
            return Err(ApiError::upstream(format!(
                "a write answered {} results, not {expected}",
                results.len()
            )));
        }
        results.truncate(expected - 1);
        Ok(results.split_off(WRITE_PRELUDE_STATEMENTS))
    }

    /// BEGIN, the statements and COMMIT sent at once, answered in order. A failed
    /// statement aborts the transaction, so every statement after it fails too and
    /// the COMMIT behind them rolls it all back; the first failure is the answer.
    async fn pipelined_transaction(
        &self,
        begin: &str,
        statements: &[Statement],
    ) -> Result<Vec<Vec<RawRow>>, ApiError> {
        // Polled in this order, each sends its requests on its first poll.
        let (began, answers, committed) = futures_util::join!(
            self.client.batch_execute(begin),
            futures_util::future::join_all(statements.iter().map(|statement| self.run(statement))),
            self.client.batch_execute("COMMIT"),
        );
        began.map_err(|error| upstream(&error))?;
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            match answer {
                Ok(rows) => results.push(rows),
                Err(error) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    return Err(upstream(&error));
                }
            }
        }
        committed.map_err(|error| upstream(&error))?;
        Ok(results)
    }
}

/// What every write transaction starts with: its timeouts (a write that waits on the
/// lock or the database longer fails as transient, and is retried by its client),
/// and the change-log lock writers take first (see
/// `sync::sql::postgres_apply_mutation`). Parameters are inlined as literals under
/// `standard_conforming_strings` (a quote doubled is the only escape).
fn write_prelude() -> String {
    format!(
        "BEGIN; SET LOCAL standard_conforming_strings = on; SET LOCAL lock_timeout = '5s'; \
         SET LOCAL statement_timeout = '15s'; SET LOCAL idle_in_transaction_session_timeout = '15s'; \
         SELECT pg_advisory_xact_lock({POSTGRES_CHANGE_LOG_LOCK})"
    )
}
/// The statements of [`write_prelude`].
const WRITE_PRELUDE_STATEMENTS: usize = 6;

/// `statement` with each `$n` replaced by its parameter as an SQL literal. Only
/// the statement's template is scanned (the engine writes no `$` inside quotes);
/// values are never scanned again.
fn inline(statement: &Statement) -> Result<String, ApiError> {
    let template = statement.sql.as_bytes();
    let mut out = String::with_capacity(statement.sql.len() + 64);
    let mut index = 0;
    let mut copied = 0;
    while index < template.len() {
        if template[index] == b'$' && template.get(index + 1).is_some_and(u8::is_ascii_digit) {
            let digits_end = (index + 1..template.len())
                .find(|&at| !template[at].is_ascii_digit())
                .unwrap_or(template.len());
            let number: usize = statement.sql[index + 1..digits_end]
                .parse()
                .map_err(|_| ApiError::upstream("a placeholder out of range"))?;
            let param = number
                .checked_sub(1)
                .and_then(|at| statement.params.get(at))
                .ok_or_else(|| ApiError::upstream(format!("no parameter ${number}")))?;
            out.push_str(&statement.sql[copied..index]);
            out.push_str(&literal(param)?);
            index = digits_end;
            copied = digits_end;
        } else {
            index += 1;
        }
    }
    out.push_str(&statement.sql[copied..]);
    Ok(out)
}

/// A parameter as an SQL literal of the type [`typed`] binds it as.
fn literal(param: &SqlParam) -> Result<String, ApiError> {
    Ok(match param {
        SqlParam::Null => "NULL::text".into(),
        SqlParam::Integer(value) => format!("({value})::int8"),
        SqlParam::Real(value) => format!("'{value}'::float8"),
        SqlParam::Boolean(value) => value.to_string(),
        SqlParam::Text(value) => {
            if value.contains('\0') {
                return Err(ApiError::UpstreamRefused { reason: "text holds a NUL character".into() });
            }
            format!("'{}'::text", value.replace('\'', "''"))
        }
    })
}

/// A row of a simple query (every cell text): an integer as a number, the rest as
/// text.
fn simple_row(row: &tokio_postgres::SimpleQueryRow) -> RawRow {
    row.columns()
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let value = match row.get(index) {
                None => Value::Null,
                Some(text) => {
                    text.parse::<i64>().map_or_else(|_| Value::String(text.to_string()), Value::from)
                }
            };
            (column.name().to_string(), value)
        })
        .collect()
}

/// From this many statements on, a transaction or a group of reads is sent at once
/// (pipelined) instead of one statement per round trip. Pipelining costs a fixed stall
/// of about 40 ms on the way through the local Hyperdrive proxy (measured here: a
/// one-mutation push wrote in 44 ms pipelined, in 5 ms one statement at a time, at
/// well under 1 ms per round trip), so it only pays off for large batches.
const PIPELINE_FROM: usize = 48;

/// A parameter with the type the SQL expects of it. NULL is sent as text: the
/// statements only bind NULL where they cast it (`$n::jsonb`).
fn typed(param: &SqlParam) -> (&(dyn ToSql + Sync), Type) {
    match param {
        SqlParam::Null => (&None::<&str>, Type::TEXT),
        SqlParam::Integer(value) => (value, Type::INT8),
        SqlParam::Real(value) => (value, Type::FLOAT8),
        SqlParam::Text(value) => (value, Type::TEXT),
        SqlParam::Boolean(value) => (value, Type::BOOL),
    }
}

/// A row in storage form (see the module docs of `upstream`).
fn raw_row(row: &Row) -> Result<RawRow, tokio_postgres::Error> {
    let mut raw = RawRow::new();
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)?.map(Value::from)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)?.map(Value::from)
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)?.map(Value::from)
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(index)?.map(Value::from)
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(index)?.map(|v| Value::from(f64::from(v)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)?.map(Value::from)
        } else if *ty == Type::JSONB || *ty == Type::JSON {
            // As text, like D1 hands JSON columns over.
            row.try_get::<_, Option<Value>>(index)?.map(|value| Value::String(value.to_string()))
        } else {
            // TEXT, VARCHAR, NAME...; any other type fails here with a clear error.
            row.try_get::<_, Option<String>>(index)?.map(Value::String)
        };
        raw.insert(column.name().to_string(), value.unwrap_or(Value::Null));
    }
    Ok(raw)
}

impl Database for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn rows(&self, statement: &Statement) -> Result<Vec<RawRow>, ApiError> {
        self.run(statement).await.map_err(|error| upstream(&error))
    }

    async fn read_each(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        if statements.len() >= PIPELINE_FROM {
            let answers = futures_util::future::join_all(statements.iter().map(|s| self.rows(s))).await;
            return answers.into_iter().collect();
        }
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            results.push(self.rows(statement).await?);
        }
        Ok(results)
    }

    async fn read(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        match statements {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![self.rows(one).await?]),
            // Several reads see one snapshot.
            _ => self.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", statements).await,
        }
    }

    /// Answers cells as `write_in_one_trip` reads them:
    /// an integer as a number, anything else as text (JSON as its text, as D1 does).
    async fn write(&self, statements: &[Statement]) -> Result<Vec<Vec<RawRow>>, ApiError> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        self.write_in_one_trip(statements).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_literals_that_cannot_break_out() {
        let statement = Statement {
            sql: "INSERT INTO t (a, b, c, d, e, f, g, h, i, j, k) VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9, $10, $11)".into(),
            params: vec![
                SqlParam::Text("it's $2 -- '; DROP TABLE t; --".into()),
                SqlParam::Text(r#"{"a":"b'c"}"#.into()),
                SqlParam::Integer(-5),
                SqlParam::Real(0.1),
                SqlParam::Boolean(true),
                SqlParam::Null,
                SqlParam::Text(r"back\slash".into()),
                SqlParam::Integer(i64::MAX),
                SqlParam::Text(String::new()),
                SqlParam::Integer(10),
                SqlParam::Integer(11),
            ],
        };
        assert_eq!(
            inline(&statement).expect("inlines"),
            "INSERT INTO t (a, b, c, d, e, f, g, h, i, j, k) VALUES ('it''s $2 -- ''; DROP TABLE t; --'::text, \
             '{\"a\":\"b''c\"}'::text::jsonb, (-5)::int8, '0.1'::float8, true, NULL::text, 'back\\slash'::text, \
             (9223372036854775807)::int8, ''::text, (10)::int8, (11)::int8)"
        );
        let missing = Statement { sql: "SELECT $2".into(), params: vec![SqlParam::Null] };
        assert!(inline(&missing).is_err());
        let nul = Statement { sql: "SELECT $1".into(), params: vec![SqlParam::Text("a\0b".into())] };
        assert!(inline(&nul).is_err());
    }
}
