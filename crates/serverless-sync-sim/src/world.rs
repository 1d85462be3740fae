//! One simulated world: the server (the connector's real pipelines over SQLite, the
//! sessions' real decisions, the app's rules in process, the reference model beside
//! it) and the browsers (the real local store and the real sync decisions), joined by
//! a network that loses, duplicates and reorders. [`World::step`] carries out one
//! [`Step`] and checks every invariant; [`World::settle`] brings the world to rest and
//! checks that everyone converged.

use std::collections::{BTreeMap, BTreeSet};

use futures_executor::block_on;
use serde_json::{Value, json};
use sync::changes::{Change, Cursor, Topic};
use sync::memo::IsolateMemo;
use sync::model::{MutationContext, SyncModel, ValidatedQuery};
use sync::protocol::mutation_callback::{MutationCallbackRequest, MutationCallbackResponse};
use sync::protocol::pull::{PullRequest, PullResponse, RefusedSubscription, Subscription};
use sync::protocol::push::{MutationOutcome, MutationResult, PushMutation, PushRequest, PushResponse};
use sync::protocol::query::{QueryRequest, QueryResponse};
use sync::protocol::unwatch::Unwatch;
use sync::pull::PullPlan;
use sync::server::{ServerState, UpstreamRule};
use sync::session::{AUTHORIZATION_FRESH_MS, OnPoke, SessionState};
use sync::sql::{self, Dialect, SqlParam, Statement};
use sync::watchers::{SocketAnswer, TopicWatchers};
use sync_server::native::{self, Call, Database, Faulty, Sqlite};
use sync_server::{ApiError, CallbackError};
use sync_store::driver::{AfterFailure, Failure, Snapshot, SyncDriver};
use sync_store::{LocalStore, MutationState};

use crate::steps::{ATTACKER, Attack, BOARDS, CLIENTS, Fate, Fault, Step, USERS, WriteKind};

/// A broken invariant, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

macro_rules! violated {
    ($($arg:tt)*) => { return Err(Violation(format!($($arg)*))) };
}

/// How often each kind of event happened in a run.
#[derive(Debug, Clone, Default)]
pub struct Counts(pub BTreeMap<&'static str, u64>);

impl Counts {
    fn bump(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallbackMode {
    Up,
    Down,
    NeedsAuth,
}

/// What reaches a browser.
#[derive(Debug, Clone)]
enum Message {
    Pushed(Result<PushResponse, Failure>),
    Snapshot(ValidatedQuery, Result<QueryResponse, Failure>),
    Pulled(PullRequest, Result<PullResponse, Failure>),
    Poke {
        session: String,
        cursor: Cursor,
        changes: Vec<Change>,
        topic: Option<String>,
        since: Option<Cursor>,
    },
    /// The session's answer to an unwatch on the socket.
    Unwatched(Vec<String>),
}

struct Client {
    key: String,
    user: &'static str,
    store: LocalStore,
    driver: SyncDriver,
    /// The store's database (shared in-memory SQLite): a reopened browser finds it.
    db_uri: String,
    inbox: Vec<Message>,
    /// The store's cursor, last seen (it never goes back, except on a resync).
    cursor: Cursor,
    /// Every mutation id this browser made.
    made: BTreeSet<String>,
    /// Pushes and pulls wait for a new token.
    waiting_for_sign_in: bool,
    /// The boards its page has open.
    open: BTreeSet<usize>,
    sessions: u64,
    /// Unwatches on their way to a session over the socket (session id, text,
    /// fate): not ordered with the HTTP requests sent after them.
    socket_out: Vec<(String, String, Fate)>,
    /// The session unwatched a topic this browser reads again, and no pull served
    /// since (it waits for a new sign-in or for a snapshot): the next one watches it
    /// again.
    pull_owed: bool,
}

struct Server {
    model: SyncModel,
    db: Faulty<Sqlite>,
    reference: ServerState,
    grants: BTreeSet<(&'static str, usize)>,
    revoked_at: BTreeMap<(&'static str, usize), i64>,
    sessions: BTreeMap<String, SessionState>,
    /// Each topic's QuerySubscription.
    watchers: BTreeMap<String, TopicWatchers>,
    callback: CallbackMode,
    /// The worker's isolates, each with its memo; requests go round them.
    isolates: Vec<IsolateMemo>,
    requests: usize,
    /// The isolate serving the next request dies at its end.
    restart_next: bool,
    /// The request being served lost its isolate: its answer goes nowhere.
    died: bool,
    /// The next fan-out reaches no session.
    sessions_unreachable: bool,
}

/// The app's own rule in its upstream, which the model does not know: no card may say
/// "forbidden". Its refusals are permanent upstream failures of those writes.
const APP_TRIGGERS: &str = "
    CREATE TRIGGER app_no_forbidden_insert BEFORE INSERT ON cards WHEN NEW.body LIKE '%forbidden%'
    BEGIN SELECT RAISE(ABORT, 'the app refuses forbidden cards'); END;
    CREATE TRIGGER app_no_forbidden_update BEFORE UPDATE ON cards WHEN NEW.body LIKE '%forbidden%'
    BEGIN SELECT RAISE(ABORT, 'the app refuses forbidden cards'); END;";
const APP_REFUSAL: &str = "the app refuses forbidden cards";

/// Rows per page of a query's answer in the simulation (small, so that answers span
/// pages).
const SIM_PAGE_ROWS: u32 = 3;

/// Isolates serving the simulated worker.
const ISOLATES: usize = 2;

pub struct World {
    /// Every answer the server gave, per (client, mutation id).
    said: BTreeMap<(String, String), Vec<MutationOutcome>>,
    /// Queued writes a browser's store refused when it opened on the next model.
    refused_by_upgrade: BTreeSet<(String, String)>,
    /// The app deployed its next model.
    upgraded: bool,
    /// Rows sent by poke outside the revocation window (found while serving).
    late_rows: Vec<String>,
    /// Every sequence number the upstream log has shown, and the highest: a new
    /// change must come after all of them (clients may have passed any).
    seqs_seen: BTreeSet<u64>,
    /// (session, topic) the app refused and has not allowed again since.
    refused_topics: BTreeSet<(String, String)>,
    /// (session, topic) its client unwatched and no query or pull watched again since.
    unwatched: BTreeSet<(String, String)>,
    seed: u64,
    now: i64,
    ids: u64,
    server: Server,
    clients: Vec<Client>,
    pub counts: Counts,
}

fn board_topic(board: usize) -> String {
    format!(r#"boardCards{{"boardId":"{}"}}"#, BOARDS[board])
}

fn board_of_topic(topic: &str) -> Option<usize> {
    BOARDS.iter().position(|board| board_topic_name(board) == topic)
}

fn board_topic_name(board: &str) -> String {
    format!(r#"boardCards{{"boardId":"{board}"}}"#)
}

fn board_index(name: &str) -> Option<usize> {
    BOARDS.iter().position(|board| *board == name)
}

/// What the browser sees of a server error: its status and `{error, reason}` body.
fn as_failure(error: ApiError) -> Failure {
    let (status, code, reason) = (error.status(), error.code(), error.to_string());
    Failure::from_status(status, &json!({ "error": code, "reason": reason }).to_string())
}

fn open_connection(uri: &str) -> sync_store::Connection {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    match rusqlite::Connection::open_with_flags(uri, flags) {
        Ok(conn) => conn,
        Err(error) => panic!("the simulation cannot open {uri}: {error}"),
    }
}

impl Server {
    fn allowed(&self, user: &str, board: usize) -> bool {
        self.grants.iter().any(|(u, b)| *u == user && *b == board)
    }

    /// The app's query rule: a user reads the boards granted to them. `Ok(Err(reason))`:
    /// the app's "no"; `Err`: no answer (down, or the sign-in lapsed).
    fn judge_query(
        &self,
        user: &'static str,
        query: &ValidatedQuery,
    ) -> Result<Result<(), String>, ApiError> {
        match self.callback {
            CallbackMode::Down => {
                return Err(native::callback_failed("query", CallbackError::Unavailable("down".into())));
            }
            CallbackMode::NeedsAuth => {
                return Err(native::callback_failed("query", CallbackError::NeedsAuth("expired".into())));
            }
            CallbackMode::Up => {}
        }
        let board = query.args.get("boardId").and_then(Value::as_str).and_then(board_index);
        Ok(match board {
            Some(board) if self.allowed(user, board) => Ok(()),
            _ => Err(format!("{user} may not read this board")),
        })
    }

    /// The app's write rule: a user writes on the boards granted to them (a move, on both).
    fn judge(&self, user: &str, question: &MutationCallbackRequest) -> MutationCallbackResponse {
        MutationCallbackResponse::per_operation(&question.operations, |operation| {
            for arg in ["boardId", "fromBoardId", "toBoardId"] {
                if let Some(name) = operation.args.get(arg).and_then(Value::as_str) {
                    match board_index(name) {
                        Some(board) if self.allowed(user, board) => {}
                        _ => return Err(format!("{user} may not write on {name}")),
                    }
                }
            }
            Ok(())
        })
    }

    /// The isolate that serves the next request.
    fn isolate(&mut self) -> usize {
        self.requests += 1;
        self.requests % ISOLATES
    }

    /// Whether the isolate dies here (a planned restart): its memo is gone and the
    /// request's answer and after-work are lost.
    fn dies(&mut self, isolate: usize) -> bool {
        if !std::mem::take(&mut self.restart_next) {
            return false;
        }
        self.isolates[isolate] = IsolateMemo::new();
        self.died = true;
        true
    }

    /// The session's owner, through the isolate's memo as the worker checks it.
    fn claim_via(&mut self, isolate: usize, session: &str, client: &str) -> Result<(), ApiError> {
        if self.isolates[isolate].is_claimed(session, client) {
            return Ok(());
        }
        self.claim(session, client)?;
        self.isolates[isolate].remember_claim(session, client);
        Ok(())
    }

    fn claim(&mut self, session: &str, client: &str) -> Result<(), ApiError> {
        self.sessions.entry(session.to_string()).or_default().claim(client).map_err(|owner| {
            ApiError::Forbidden { code: "session_mismatch", reason: format!("session belongs to {owner}") }
        })
    }
}

impl World {
    pub fn new(seed: u64) -> Self {
        let model = crate::model();
        let db = match Sqlite::in_memory(&model).and_then(|db| db.migrate(APP_TRIGGERS).map(|()| db)) {
            Ok(db) => Faulty::new(db),
            Err(error) => panic!("the simulation's upstream: {error}"),
        };
        let mut grants = BTreeSet::new();
        for (user, board) in [("ada", 0), ("ada", 1), ("bo", 1), ("bo", 2), ("mallory", 2)] {
            grants.insert((user, board));
        }
        let server = Server {
            reference: ServerState::new(model.clone()).with_upstream_rule(UpstreamRule(std::sync::Arc::new(
                |collection, after| {
                    let body =
                        after.and_then(|row| row.get("body")).and_then(Value::as_str).unwrap_or_default();
                    (collection == "cards" && body.contains("forbidden")).then(|| APP_REFUSAL.to_string())
                },
            ))),
            model,
            db,
            grants,
            revoked_at: BTreeMap::new(),
            sessions: BTreeMap::new(),
            watchers: BTreeMap::new(),
            callback: CallbackMode::Up,
            isolates: vec![IsolateMemo::new(); ISOLATES],
            requests: 0,
            restart_next: false,
            died: false,
            sessions_unreachable: false,
        };
        let mut world = Self {
            said: BTreeMap::new(),
            refused_by_upgrade: BTreeSet::new(),
            upgraded: false,
            late_rows: Vec::new(),
            seqs_seen: BTreeSet::new(),
            refused_topics: BTreeSet::new(),
            unwatched: BTreeSet::new(),
            seed,
            now: 1_700_000_000_000,
            ids: 0,
            server,
            clients: Vec::new(),
            counts: Counts::default(),
        };
        for (index, user) in USERS.iter().enumerate() {
            let key = format!("sim-{seed:016x}-client-{index}-key-0123456789abcdef");
            let db_uri = format!("file:sync-sim-{seed}-{index}-{}?mode=memory&cache=shared", unique());
            let conn = open_connection(&db_uri);
            let store = match LocalStore::open_keyed(conn, crate::model(), || key.clone()) {
                Ok((store, _)) => store,
                Err(error) => panic!("the simulation's store: {error}"),
            };
            let session = world.new_id(sync::ids::SESSION);
            world.clients.push(Client {
                key,
                user,
                store,
                driver: SyncDriver::new(session),
                db_uri,
                inbox: Vec::new(),
                cursor: Cursor::START,
                made: BTreeSet::new(),
                waiting_for_sign_in: false,
                open: BTreeSet::new(),
                sessions: 1,
                socket_out: Vec::new(),
                pull_owed: false,
            });
        }
        world
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.ids += 1;
        sync::ids::new_id(
            prefix,
            u64::try_from(self.now).unwrap_or(0),
            u128::from(self.ids) | (u128::from(self.seed) << 64),
        )
    }

    // ------------------------------------------------------------ the server

    fn serve_query(&mut self, user: &'static str, key: &str, body: &[u8]) -> Result<QueryResponse, ApiError> {
        // The worker's own parsing (and its body bound).
        let request: &QueryRequest = &sync_server::parse_json(body)?;
        native::check_client(Some(key), &request.client_id, &request.session_id)?;
        let query = self.server.model.validate_query(&request.name, &request.args)?;
        let isolate = self.server.isolate();
        if let Err(reason) = self.server.judge_query(user, &query)? {
            // As the worker does: unwatched before the "no" is answered.
            self.server.claim(&request.session_id, &request.client_id)?;
            self.refuse(isolate, &request.session_id, &request.client_id, &[query.topic.to_string()]);
            return Err(ApiError::Forbidden { code: "query_denied", reason });
        }
        self.server.claim(&request.session_id, &request.client_id)?;
        self.watch(&request.session_id, &[query.topic.to_string()], None);
        // Pages of a few rows (the worker's are thousands), followed to the end as the
        // browser follows them: every page's rows, the first page's cursor.
        let mut page = block_on(native::query_page(
            &self.server.model,
            &self.server.db,
            &query,
            request.after.as_ref(),
            request.window,
            SIM_PAGE_ROWS,
        ))?;
        let cursor = page.cursor;
        let mut rows = std::mem::take(&mut page.rows);
        while let Some(after) = page.more.take() {
            page = block_on(native::query_page(
                &self.server.model,
                &self.server.db,
                &query,
                Some(&after),
                request.window,
                SIM_PAGE_ROWS,
            ))?;
            rows.append(&mut page.rows);
        }
        if self.server.dies(isolate) {
            return Err(ApiError::upstream("the isolate died"));
        }
        Ok(QueryResponse { rows, cursor, topic: query.topic, more: None, complete: page.complete })
    }

    /// `sync::push::withhold_unreadable`, asking the app's query rule about each topic
    /// (no answer counts as no).
    fn withhold_unreadable(
        &self,
        user: &'static str,
        mutations: &[PushMutation],
        results: &mut [MutationResult],
    ) {
        let model = &self.server.model;
        let readable: Vec<Topic> = sync::push::topics_of_answers(model, mutations, results)
            .into_iter()
            .filter(|topic| {
                topic
                    .query_and_args()
                    .and_then(|(name, args)| model.validate_query(name, &args).ok())
                    .is_some_and(|query| matches!(self.server.judge_query(user, &query), Ok(Ok(()))))
            })
            .collect();
        sync::push::withhold_unreadable(model, mutations, results, &readable);
    }

    /// The app refused `topics` to the session: it stops watching them at once.
    fn refuse(&mut self, isolate: usize, session: &str, client: &str, topics: &[String]) {
        self.server.isolates[isolate].forget_watch(session, client, topics);
        self.server.sessions.entry(session.to_string()).or_default().refuse(topics);
        for topic in topics {
            self.refused_topics.insert((session.to_string(), topic.clone()));
        }
    }

    /// The session watches `topics` (the app just allowed them); `acknowledged`: the
    /// client holds everything through it.
    fn watch(&mut self, session: &str, topics: &[String], acknowledged: Option<u64>) {
        for topic in topics {
            self.refused_topics.remove(&(session.to_string(), topic.clone()));
            self.unwatched.remove(&(session.to_string(), topic.clone()));
        }
        let now = self.now;
        let state = self.server.sessions.entry(session.to_string()).or_default();
        let subscribed = state.subscribe(topics, acknowledged, now);
        let user = state.user.clone();
        for topic in subscribed.added {
            self.server.watchers.entry(topic).or_default().watch(session, user.as_deref(), now);
        }
        if let Some(release) = subscribed.release {
            self.send_poke(session, release.cursor, release.changes, release.topic, release.since);
        }
    }

    fn serve_push(&mut self, user: &'static str, key: &str, body: &[u8]) -> Result<PushResponse, ApiError> {
        // The worker's own parsing (and its body bound).
        let request: &PushRequest = &sync_server::parse_json(body)?;
        native::check_client(Some(key), &request.client_id, &request.session_id)?;
        native::check_push(request)?;
        let isolate = self.server.isolate();
        self.server.claim_via(isolate, &request.session_id, &request.client_id)?;
        let asked = std::cell::RefCell::new(None);
        let server = &self.server;
        let result =
            block_on(native::push(
                &server.model,
                &server.db,
                request,
                self.now,
                async |question| match server.callback {
                    CallbackMode::Down => {
                        Err(native::callback_failed("mutation", CallbackError::Unavailable("down".into())))
                    }
                    CallbackMode::NeedsAuth => {
                        Err(native::callback_failed("mutation", CallbackError::NeedsAuth("expired".into())))
                    }
                    CallbackMode::Up => {
                        let answer = server.judge(user, &question);
                        *asked.borrow_mut() = Some(answer.clone());
                        Ok(answer)
                    }
                },
            ));
        // As the worker does: a confirmed image goes back only to a writer the app lets
        // read it.
        let mut result = result;
        if let Ok(pushed) = &mut result {
            self.withhold_unreadable(user, &request.mutations, &mut pushed.response.results);
        }
        // What a failed push left stored (a commit whose answer was lost, or the writes
        // its fallback made one by one before a transient failure) happened all the
        // same: the reference carries out those writes, in order.
        let mirrored: Vec<PushMutation> = if result.is_ok() {
            request.mutations.clone()
        } else {
            let stored = self.upstream_answered(&request.client_id)?;
            request
                .mutations
                .iter()
                .filter(|m| {
                    stored.contains(&m.id)
                        && self.server.reference.stored_outcome(&request.client_id, &m.id).is_none()
                })
                .cloned()
                .collect()
        };
        if !mirrored.is_empty() && result.is_err() {
            self.counts.bump("failed pushes that stored answers");
        }
        if result.is_ok() || !mirrored.is_empty() {
            // The reference carries out the same push with the app's same answer.
            let answer = asked.into_inner();
            let mut reference_asked_alone = false;
            let mut expected = self.server.reference.push_batch(
                &request.client_id,
                &request.session_id,
                &mirrored,
                self.now,
                |question| match &answer {
                    Some(answer) => answer.clone(),
                    None => {
                        reference_asked_alone = true;
                        MutationCallbackResponse::per_operation(&question.operations, |_| {
                            Err("not asked".into())
                        })
                    }
                },
            );
            if reference_asked_alone {
                return Err(ApiError::Upstream {
                    reason: "VIOLATION: the reference asked the app where the connector did not".into(),
                });
            }
            self.withhold_unreadable(user, &mirrored, &mut expected);
            if let Ok(pushed) = &result
                && pushed.response.results != expected
            {
                return Err(ApiError::Upstream {
                    reason: format!(
                        "VIOLATION: the connector answered {:?}, the reference {:?}",
                        pushed.response.results, expected
                    ),
                });
            }
        }
        if result.is_err() && self.server.dies(isolate) {
            return Err(ApiError::upstream("the isolate died"));
        }
        let pushed = result?;
        for answer in &pushed.response.results {
            self.said
                .entry((request.client_id.clone(), answer.id.clone()))
                .or_default()
                .push(answer.outcome.clone());
        }
        if self.server.dies(isolate) {
            // Committed; the answer and the pokes after it are lost.
            self.counts.bump("pushes committed by an isolate that died");
            return Err(ApiError::upstream("the isolate died"));
        }
        if !pushed.topics.is_empty() {
            self.counts.bump("pokes fanned out");
            let since = block_on(native::poke_since(
                &self.server.db,
                pushed.since.clone(),
                pushed.one_transaction,
                &pushed.topics,
                &pushed.committed,
            ))
            .unwrap_or_default();
            let carried =
                sync::fanout::carried_by_topic(&self.server.model, &pushed.topics, &pushed.committed);
            for topic in &pushed.topics {
                let changes = carried.get(topic).cloned().unwrap_or_default();
                self.poke_topic(topic, pushed.response.cursor.0, changes, since.get(topic).copied());
            }
        }
        Ok(pushed.response)
    }

    /// A QuerySubscription's fan-out: every session watching `topic` decides, and
    /// answers how many sockets it has (the current session of an open browser has
    /// one; an old session none).
    fn poke_topic(&mut self, topic: &str, cursor: u64, changes: Vec<Change>, since: Option<u64>) {
        let sessions: Vec<String> =
            self.server.watchers.get(topic).map(|w| w.sessions().cloned().collect()).unwrap_or_default();
        let unreachable = std::mem::take(&mut self.server.sessions_unreachable);
        let now = self.now;
        let mut answers = Vec::new();
        for session in sessions {
            if unreachable {
                answers.push((session, SocketAnswer::Unreachable));
                continue;
            }
            let mut sockets = usize::from(self.clients.iter().any(|c| c.driver.session_id() == session));
            if let Some(state) = self.server.sessions.get_mut(&session) {
                match state.poke(topic, cursor, changes.clone(), since, now) {
                    OnPoke::Send(out) => {
                        // After the app's explicit "no" to a topic, no poke for it at
                        // all (rows or a bare cursor) until it says yes again.
                        if self.refused_topics.contains(&(session.clone(), topic.to_string())) {
                            self.late_rows.push(format!(
                                "session {session} was poked for {topic} after the app refused it"
                            ));
                        }
                        // Nor after its client said it no longer reads it.
                        if self.unwatched.contains(&(session.clone(), topic.to_string())) {
                            self.late_rows.push(format!(
                                "session {session} was poked for {topic} after its client unwatched it"
                            ));
                        }
                        self.send_poke(&session, out.cursor, out.changes, out.topic, out.since);
                    }
                    // As the object answers: not watched, so forget me.
                    OnPoke::Unwatched => sockets = 0,
                    OnPoke::Skip | OnPoke::Hold { .. } => {}
                }
            }
            answers.push((session.clone(), SocketAnswer::Sockets(sockets)));
        }
        if let Some(watchers) = self.server.watchers.get_mut(topic) {
            watchers.after_poke(&answers);
        }
    }

    fn send_poke(
        &mut self,
        session: &str,
        cursor: u64,
        changes: Vec<Change>,
        topic: Option<String>,
        since: Option<Cursor>,
    ) {
        let now = self.now;
        let Some(client) = self.clients.iter_mut().find(|c| c.driver.session_id() == session) else { return };
        // Rows by poke only on a board this user may read, or within the documented
        // revocation window after the app stopped allowing it.
        if let Some(topic) = &topic
            && let Some(board) = board_of_topic(topic)
            && changes.iter().any(|change| change.row.is_some())
            && !self.server.allowed(client.user, board)
        {
            let revoked = self.server.revoked_at.get(&(client.user, board)).copied().unwrap_or(i64::MIN / 2);
            if now - revoked > AUTHORIZATION_FRESH_MS {
                self.late_rows.push(format!(
                    "{} got rows of {topic} by poke {} ms after losing it",
                    client.user,
                    now - revoked
                ));
            }
        }
        client.inbox.push(Message::Poke {
            session: session.to_string(),
            cursor: Cursor(cursor),
            changes,
            topic,
            since,
        });
    }

    fn serve_pull(&mut self, user: &'static str, key: &str, body: &[u8]) -> Result<PullResponse, ApiError> {
        // The worker's own parsing (and its body bound).
        let request: &PullRequest = &sync_server::parse_json(body)?;
        native::check_client(Some(key), &request.client_id, &request.session_id)?;
        let isolate = self.server.isolate();
        let mut authorized = Vec::new();
        let mut refused = Vec::new();
        for subscription in &request.subscriptions {
            let query = self.server.model.validate_query(&subscription.name, &subscription.args)?;
            match self.server.judge_query(user, &query)? {
                Ok(()) => authorized.push((query.topic, subscription.cursor)),
                Err(reason) => refused.push(RefusedSubscription {
                    name: query.name,
                    args: query.args,
                    topic: query.topic.to_string(),
                    reason,
                }),
            }
        }
        if !refused.is_empty() {
            // As the worker does: unwatched before the "no" is answered.
            self.server.claim(&request.session_id, &request.client_id)?;
            let topics: Vec<String> = refused.iter().map(|refusal| refusal.topic.clone()).collect();
            self.refuse(isolate, &request.session_id, &request.client_id, &topics);
            self.counts.bump("pulls with a refused subscription");
        }
        let plan = PullPlan::new(request.cursor, authorized);
        // As the worker does: watch before the read unless this isolate's memo knows
        // the session watches every topic already; acknowledge after answering.
        let topics: Vec<String> = plan.topics().iter().map(ToString::to_string).collect();
        let (session, client) = (&request.session_id, &request.client_id);
        let watch = self.server.isolates[isolate].pull_watch(session, client, &topics, request.cursor);
        if let Some(acknowledge) = watch.call_before {
            self.server.claim(session, client)?;
            self.watch(session, &topics, acknowledge);
            self.server.isolates[isolate].remember_watch(session, client, &topics);
        }
        let (page, head) = block_on(native::pull_page(&self.server.model, &self.server.db, &plan))?;
        self.server.isolates[isolate].saw_head(head);
        let page = page?;
        // Every row a pull hands out is the record as it stands when the pull is
        // served, and on a board this user may read then.
        for change in &page.changes {
            let Some(row) = &change.row else { continue };
            let current = self.server.reference.record(&change.collection, &change.record_id);
            if current.map(solid) != Some(solid(row)) {
                return Err(ApiError::Upstream {
                    reason: format!(
                        "VIOLATION: a pull handed out {}@{} = {row:?}, superseded by {current:?}",
                        change.record_id, change.seq.0
                    ),
                });
            }
            let readable = self.server.model.topics_for_row(&change.collection, row).iter().any(|topic| {
                board_of_topic(topic.as_str()).is_some_and(|board| self.server.allowed(user, board))
            });
            if !readable {
                return Err(ApiError::Upstream {
                    reason: format!("VIOLATION: {user} pulled {row:?}, on no board they may read"),
                });
            }
        }
        if self.server.dies(isolate) {
            return Err(ApiError::upstream("the isolate died"));
        }
        if watch.call_after {
            self.watch(&request.session_id, &watch.refresh, Some(page.cursor.0));
        }
        Ok(PullResponse { changes: page.changes, cursor: page.cursor, has_more: page.has_more, refused })
    }

    // ------------------------------------------------------------ the browsers

    /// Carries a request to the server and its answer back, as `fate` has it.
    /// Serves a request; a request whose isolate died gets no answer.
    fn answer(&mut self, serve: &mut impl FnMut(&mut Self) -> Message, lost: &Message) -> Message {
        let answer = serve(self);
        if std::mem::take(&mut self.server.died) { lost.clone() } else { answer }
    }

    fn route(
        &mut self,
        index: usize,
        fate: Fate,
        lost: Message,
        mut serve: impl FnMut(&mut Self) -> Message,
    ) {
        let arrivals = match fate {
            Fate::RequestLost => {
                self.counts.bump("requests lost");
                vec![lost]
            }
            Fate::AnswerLost => {
                self.counts.bump("answers lost");
                serve(self);
                self.server.died = false;
                vec![lost]
            }
            Fate::Duplicated => {
                self.counts.bump("requests duplicated");
                vec![Self::answer(self, &mut serve, &lost), Self::answer(self, &mut serve, &lost)]
            }
            Fate::Delivered => vec![Self::answer(self, &mut serve, &lost)],
        };
        self.clients[index].inbox.extend(arrivals);
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn unique() -> u64 {
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A request as the network carries it.
fn body(request: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(request).unwrap_or_default()
}

fn lost() -> Failure {
    Failure::Network("connection lost".into())
}

impl World {
    fn send_push(&mut self, index: usize, fate: Fate) -> Result<(), Violation> {
        let client = &mut self.clients[index];
        if client.waiting_for_sign_in {
            return Ok(());
        }
        let Some(request) = client.driver.push_request(&client.store).map_err(store_failed)? else {
            return Ok(());
        };
        let (user, key, sent) = (client.user, client.key.clone(), body(&request));
        self.counts.bump("pushes");
        if request.first_send {
            self.counts.bump("pushes sent for the first time (no read before the write)");
        }
        self.route(index, fate, Message::Pushed(Err(lost())), |world| {
            Message::Pushed(world.serve_push(user, &key, &sent).map_err(as_failure))
        });
        self.reported_violation(index)
    }

    fn send_query(&mut self, index: usize, query: ValidatedQuery, fate: Fate) -> Result<(), Violation> {
        let client = &self.clients[index];
        let request = QueryRequest {
            protocol_version: sync::PROTOCOL_VERSION,
            client_id: client.store.client_id().to_string(),
            session_id: client.driver.session_id().to_string(),
            name: query.name.clone(),
            args: query.args.clone(),
            after: None,
            window: None,
        };
        let (user, key, sent) = (client.user, client.key.clone(), body(&request));
        self.counts.bump("queries");
        let lost_message = Message::Snapshot(query.clone(), Err(lost()));
        self.route(index, fate, lost_message, |world| {
            Message::Snapshot(query.clone(), world.serve_query(user, &key, &sent).map_err(as_failure))
        });
        Ok(())
    }

    fn send_pull(&mut self, index: usize, fate: Fate) -> Result<(), Violation> {
        let client = &self.clients[index];
        if client.waiting_for_sign_in {
            return Ok(());
        }
        let Some(request) = client.driver.pull_request(&client.store).map_err(store_failed)? else {
            return Ok(());
        };
        let (user, key, sent) = (client.user, client.key.clone(), body(&request));
        self.counts.bump("pulls");
        let lost_message = Message::Pulled(request.clone(), Err(lost()));
        let answered_before = self.clients[index].inbox.len();
        self.route(index, fate, lost_message, |world| {
            Message::Pulled(request.clone(), world.serve_pull(user, &key, &sent).map_err(as_failure))
        });
        // Served whole (this pull, not an older one still on its way): the session
        // watches what it lists again.
        let client = &mut self.clients[index];
        if client.inbox[answered_before..].iter().any(|message| matches!(message, Message::Pulled(_, Ok(_))))
        {
            client.pull_owed = false;
        }
        self.reported_violation(index)
    }

    /// A violation the server side found while serving (reported through an error).
    fn reported_violation(&mut self, index: usize) -> Result<(), Violation> {
        for message in &self.clients[index].inbox {
            let failure = match message {
                Message::Pushed(Err(failure))
                | Message::Pulled(_, Err(failure))
                | Message::Snapshot(_, Err(failure)) => failure,
                _ => continue,
            };
            if failure.reason().contains("VIOLATION") {
                violated!("{}", failure.reason());
            }
        }
        Ok(())
    }

    /// The browser handles one waiting message.
    fn handle(&mut self, index: usize, message: Message) -> Result<(), Violation> {
        if std::env::var_os("SYNC_SIM_TRACE").is_some() {
            eprintln!("client {index} handles {message:?}");
        }
        match message {
            Message::Pushed(Ok(answer)) => {
                let client = &mut self.clients[index];
                client.driver.on_pushed(&mut client.store, &answer).map_err(store_failed)?;
                // What the browser was told is what the server keeps.
                for result in &answer.results {
                    self.counts.bump(match result.outcome {
                        MutationOutcome::Confirmed { .. } => "writes confirmed",
                        MutationOutcome::Rejected { .. } => "writes rejected",
                    });
                    if let MutationOutcome::Confirmed { .. } = result.outcome {
                        let kept = self
                            .server
                            .reference
                            .stored_outcome(self.clients[index].store.client_id(), &result.id);
                        if !kept.is_some_and(|kept| same_answer(&result.outcome, kept)) {
                            violated!(
                                "client {index} was told {:?} for {}, the server keeps {kept:?}",
                                result.outcome,
                                result.id
                            );
                        }
                    }
                }
            }
            Message::Pushed(Err(failure)) => {
                let client = &mut self.clients[index];
                let next = client.driver.on_push_failed(&mut client.store, &failure, 0);
                if next == AfterFailure::WaitForSignIn {
                    client.waiting_for_sign_in = true;
                }
                self.after_failure(index, &failure)?;
            }
            Message::Snapshot(query, Ok(answer)) => {
                let client = &mut self.clients[index];
                match client.driver.on_snapshot(&mut client.store, &query, &answer.rows, answer.cursor) {
                    Ok(Snapshot::Installed(_)) => {
                        self.counts.bump("snapshots installed");
                        // The runtime pulls after installing one (`fetch_snapshot`), again
                        // until served: an answer of a query sent before an unwatch is
                        // watched again by it.
                        self.clients[index].pull_owed = true;
                        self.send_pull(index, Fate::Delivered)?;
                    }
                    Ok(Snapshot::NotWanted) => {}
                    Ok(Snapshot::Stale) => {
                        self.counts.bump("stale snapshots fetched again");
                        self.send_query(index, query, Fate::Delivered)?;
                    }
                    Err(error) => return Err(store_failed(error)),
                }
            }
            Message::Snapshot(query, Err(failure)) => {
                let client = &mut self.clients[index];
                match SyncDriver::after_failure(&failure, 0) {
                    AfterFailure::Stop => {
                        client.driver.refused(query.topic.as_str(), failure.reason().to_string())
                    }
                    AfterFailure::WaitForSignIn => {
                        client.waiting_for_sign_in = true;
                        client.driver.forget(query.topic.as_str());
                    }
                    _ => client.driver.forget(query.topic.as_str()),
                }
            }
            Message::Pulled(request, Ok(page)) => {
                let client = &mut self.clients[index];
                client.driver.on_pulled(&mut client.store, &request, &page).map_err(store_failed)?;
            }
            Message::Pulled(_, Err(failure)) => match SyncDriver::after_failure(&failure, 0) {
                AfterFailure::Resync => {
                    self.counts.bump("resyncs");
                    let client = &mut self.clients[index];
                    let queries = client.driver.resync(&mut client.store).map_err(store_failed)?;
                    client.cursor = Cursor::START;
                    self.refetch(index, queries)?;
                }
                AfterFailure::Stop => {
                    // Refused whole: fetch each query on its own to find the refused.
                    let queries = self.clients[index].driver.recheck();
                    self.refetch(index, queries)?;
                }
                _ => self.after_failure(index, &failure)?,
            },
            Message::Poke { session, cursor, changes, topic, since } => {
                let client = &mut self.clients[index];
                if client.driver.session_id() != session {
                    return Ok(());
                }
                let client = &mut self.clients[index];
                client
                    .driver
                    .on_poke(&mut client.store, cursor, &changes, topic.as_deref(), since)
                    .map_err(store_failed)?;
                self.counts.bump("pokes handled");
                // Poked for a topic it does not read: the session is told (again).
                self.send_unwatch(index, Fate::Delivered)?;
            }
            Message::Unwatched(topics) => {
                // Read again meanwhile: a pull watches it again.
                if self.clients[index].driver.on_unwatched(&topics) {
                    self.counts.bump("unwatch answers for a topic read again (pulled)");
                    self.clients[index].pull_owed = true;
                    self.send_pull(index, Fate::Delivered)?;
                }
            }
        }
        Ok(())
    }

    fn after_failure(&mut self, index: usize, failure: &Failure) -> Result<(), Violation> {
        match SyncDriver::after_failure(failure, 0) {
            AfterFailure::WaitForSignIn => self.clients[index].waiting_for_sign_in = true,
            AfterFailure::Stop if index != ATTACKER => {
                violated!("honest client {index} was refused for good: {}", failure.reason())
            }
            _ => {}
        }
        Ok(())
    }

    fn refetch(&mut self, index: usize, queries: Vec<Subscription>) -> Result<(), Violation> {
        for subscription in queries {
            let query = self
                .server
                .model
                .validate_query(&subscription.name, &subscription.args)
                .map_err(|e| Violation(e.to_string()))?;
            self.send_query(index, query, Fate::Delivered)?;
        }
        Ok(())
    }

    fn open_board(&mut self, index: usize, board: usize, fate: Fate) -> Result<(), Violation> {
        let query = self
            .server
            .model
            .validate_query("boardCards", &json!({ "boardId": BOARDS[board] }))
            .map_err(|e| Violation(e.to_string()))?;
        let client = &mut self.clients[index];
        client.open.insert(board);
        if client.driver.subscribe(&query) {
            self.send_query(index, query, fate)?;
        }
        Ok(())
    }

    /// The page no longer shows `board`: its query is dropped and the session told.
    fn close_board(&mut self, index: usize, board: usize, fate: Fate) -> Result<(), Violation> {
        let client = &mut self.clients[index];
        if client.open.remove(&board) {
            client.driver.stop_reading(&board_topic(board));
            self.counts.bump("boards closed");
        }
        self.send_unwatch(index, fate)
    }

    /// The client's pending unwatches go out on its socket (arriving at a later
    /// step, maybe after requests sent after them).
    fn send_unwatch(&mut self, index: usize, fate: Fate) -> Result<(), Violation> {
        let session = self.clients[index].driver.session_id().to_string();
        for unwatch in self.clients[index].driver.take_unwatch() {
            self.counts.bump("unwatches sent");
            if fate == Fate::RequestLost {
                self.counts.bump("unwatches lost");
                continue;
            }
            let text = serde_json::to_string(&unwatch).map_err(|e| Violation(e.to_string()))?;
            self.clients[index].socket_out.push((session.clone(), text, fate));
        }
        Ok(())
    }

    /// The oldest unwatch on the client's socket reaches its session object: read
    /// with the object's own parsing and bounds, the topics unwatched, and answered
    /// on the socket. A lost answer is a dropped socket: the client reconnects and
    /// pulls to catch up.
    fn deliver_unwatch(&mut self, index: usize) -> Result<(), Violation> {
        if self.clients[index].socket_out.is_empty() {
            return Ok(());
        }
        let (session, text, fate) = self.clients[index].socket_out.remove(0);
        let read = match Unwatch::parse(&text) {
            Ok(read) => read,
            Err(error) => violated!("the session refused an honest unwatch ({error}): {text}"),
        };
        for _ in 0..if fate == Fate::Duplicated { 2 } else { 1 } {
            if let Some(state) = self.server.sessions.get_mut(&session) {
                // What it watched of them must get no poke from now on.
                let watched: Vec<String> =
                    read.topics.iter().filter(|topic| state.topics.contains(*topic)).cloned().collect();
                state.unwatch(&read.topics);
                for topic in watched {
                    self.unwatched.insert((session.clone(), topic));
                }
            }
        }
        // The socket it came on belongs to a session this browser still runs.
        if self.clients[index].driver.session_id() != session {
            return Ok(());
        }
        if fate == Fate::AnswerLost {
            self.counts.bump("unwatch answers lost (socket reconnects, pulls)");
            self.clients[index].pull_owed = true;
            return self.send_pull(index, Fate::Delivered);
        }
        self.clients[index].inbox.push(Message::Unwatched(read.topics));
        Ok(())
    }

    fn write(&mut self, index: usize, kind: WriteKind, record: usize, board: usize, to: usize, body: &str) {
        let user = self.clients[index].user;
        let (name, args) = match kind {
            WriteKind::Add => ("addCard", json!({ "boardId": BOARDS[board], "author": user, "body": body })),
            WriteKind::Edit => ("editCard", json!({ "boardId": BOARDS[board], "body": body })),
            WriteKind::Delete => ("deleteCard", json!({ "boardId": BOARDS[board] })),
            WriteKind::Move => ("moveCard", json!({ "fromBoardId": BOARDS[board], "toBoardId": BOARDS[to] })),
        };
        let id = self.new_id(sync::ids::OUTBOX);
        let client = &mut self.clients[index];
        let ctx = MutationContext {
            client_id: client.store.client_id().into(),
            record_id: format!("card_{record}"),
            now_ms: self.now,
        };
        if client.store.mutate(&id, name, &args, &ctx).is_ok() {
            client.driver.written(&id);
            client.made.insert(id);
            self.counts.bump("local writes");
        }
    }

    fn reopen(&mut self, index: usize) -> Result<(), Violation> {
        self.counts.bump("browsers reopened");
        let session = self.new_id(sync::ids::SESSION);
        let client = &mut self.clients[index];
        // Opened before the old one closes: the shared in-memory database lives on.
        let conn = open_connection(&client.db_uri);
        let key = client.key.clone();
        // A reload runs the app's deployed bundle, with its model.
        let (mut store, _) =
            LocalStore::open_keyed(conn, self.server.model.clone(), || key).map_err(store_failed)?;
        for (id, _) in store.take_upgrade_rejections() {
            self.refused_by_upgrade.insert((store.client_id().to_string(), id));
        }
        client.store = store;
        client.driver = SyncDriver::new(session);
        client.inbox.clear();
        client.sessions += 1;
        let boards: Vec<usize> = client.open.iter().copied().collect();
        for board in boards {
            self.open_board(index, board, Fate::Delivered)?;
        }
        Ok(())
    }

    fn direct_write(
        &mut self,
        record: usize,
        board: usize,
        delete: bool,
        body: &str,
    ) -> Result<(), Violation> {
        self.counts.bump("direct writes");
        let id = format!("card_{record}");
        let cards =
            self.server.model.collection("cards").cloned().ok_or_else(|| Violation("no cards".into()))?;
        let exists = self.server.reference.record("cards", &id).is_some();
        let statement = match (delete, exists) {
            (true, _) => Statement { sql: "DELETE FROM cards WHERE id = ?1".into(), params: vec![SqlParam::Text(id.clone())] },
            (false, true) => Statement {
                sql: "UPDATE cards SET body = ?2, board_id = ?3 WHERE id = ?1".into(),
                params: vec![SqlParam::Text(id.clone()), SqlParam::Text(body.into()), SqlParam::Text(BOARDS[board].into())],
            },
            (false, false) => Statement {
                sql: "INSERT INTO cards (id, board_id, author, body, created_at, last_modified_by) VALUES (?1, ?3, 'admin', ?2, ?4, '')".into(),
                params: vec![
                    SqlParam::Text(id.clone()),
                    SqlParam::Text(body.into()),
                    SqlParam::Text(BOARDS[board].into()),
                    SqlParam::Integer(self.now),
                ],
            },
        };
        let head_before = self.server.reference.head();
        match block_on(self.server.db.inner.write(&[statement])) {
            Ok(_) => {}
            // The app's own rule holds for its admins too.
            Err(_) if body.contains("forbidden") && !delete => return Ok(()),
            Err(error) => violated!("direct write: {error}"),
        }
        let after =
            block_on(self.server.db.inner.rows(
                &sql::select_by_id(Dialect::Sqlite, &cards, &id).map_err(|e| Violation(e.to_string()))?,
            ))
            .map_err(|e| Violation(e.to_string()))?
            .into_iter()
            .next()
            .map(|raw| sql::decode_row(&cards, raw));
        if let Some(seq) = self.server.reference.write_direct("cards", &id, after)
            && seq > head_before
        {
            // The change watcher's scan: row-less pokes on the change's topics.
            let topics: Vec<String> = self
                .server
                .reference
                .log()
                .last()
                .map(|change| change.topics.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            for topic in topics {
                self.poke_topic(&topic, seq.0, Vec::new(), None);
            }
        }
        Ok(())
    }

    /// The app deploys its next model: the upstream is migrated (the migration the
    /// engine generates), the server runs the new model at once.
    fn upgrade(&mut self) -> Result<(), Violation> {
        if std::mem::replace(&mut self.upgraded, true) {
            return Ok(());
        }
        self.counts.bump("model upgrades");
        let next = crate::upgraded_model();
        let before = sync::migrations::plan(None, &self.server.model)
            .ok()
            .flatten()
            .map(|migration| migration.snapshot);
        let migration = sync::migrations::plan(before.as_ref(), &next)
            .map_err(|e| Violation(format!("the upgrade's migration: {e}")))?
            .ok_or_else(|| Violation("the upgrade needs no migration".into()))?;
        self.server
            .db
            .inner
            .migrate(&migration.sqlite)
            .map_err(|e| Violation(format!("migrating the upstream: {e}")))?;
        block_on(native::check_schema(&self.server.db.inner, &next))
            .map_err(|e| Violation(format!("the migrated upstream does not match the model: {e}")))?;
        self.server.model = next.clone();
        self.server.reference.upgrade(next);
        Ok(())
    }

    fn compact(&mut self) -> Result<(), Violation> {
        let done = block_on(native::compact(&self.server.db, i64::MAX));
        match done {
            Ok(compaction) => {
                self.counts.bump("compactions");
                self.server.reference.compact(Cursor(compaction.through));
                Ok(())
            }
            // A fault planned for a read or write met the compaction: nothing done, or
            // only the mark (then the reference compacts too: the next run removes).
            Err(_) => Ok(()),
        }
    }

    fn attack(&mut self, attack: Attack) -> Result<(), Violation> {
        let me = ATTACKER;
        let (key, my_id, my_session) = {
            let client = &self.clients[me];
            (client.key.clone(), client.store.client_id().to_string(), client.driver.session_id().to_string())
        };
        match attack {
            Attack::ImpersonateClient { victim } => {
                self.counts.bump("attacks: impersonate a client");
                let victim_id = self.clients[victim].store.client_id().to_string();
                let request = PushRequest {
                    protocol_version: sync::PROTOCOL_VERSION,
                    client_id: victim_id,
                    session_id: my_session,
                    mutations: Vec::new(),
                    first_send: false,
                };
                match self.serve_push("mallory", &key, &body(&request)) {
                    Err(error) if error.code() == "client_key_mismatch" => {}
                    other => violated!("pushing as client {victim} without its key: {:?}", other.map(|_| ())),
                }
            }
            Attack::HijackSession { victim } => {
                let session = self.clients[victim].driver.session_id().to_string();
                if self.server.sessions.get(&session).is_none_or(|s| s.owner.is_none()) {
                    return Ok(());
                }
                self.counts.bump("attacks: hijack a session");
                // (A pull that names no topic touches no session: it names one.)
                let watching = Subscription {
                    name: "boardCards".into(),
                    args: json!({ "boardId": BOARDS[0] }),
                    cursor: None,
                };
                let request = PullRequest {
                    protocol_version: sync::PROTOCOL_VERSION,
                    client_id: my_id,
                    session_id: session,
                    cursor: Cursor::START,
                    subscriptions: vec![watching],
                };
                match self.serve_pull("mallory", &key, &body(&request)) {
                    // Refused, or not served at all (the app's callback was down).
                    Err(error) if error.code() == "session_mismatch" || error.is_transient() => {}
                    other => violated!("listening on client {victim}'s session: {:?}", other.map(|_| ())),
                }
            }
            Attack::ReplayWrites { victim } => {
                self.counts.bump("attacks: replay writes");
                let theirs = self.clients[victim].store.outbox(10).map_err(store_failed)?;
                if theirs.is_empty() {
                    return Ok(());
                }
                let request = PushRequest {
                    protocol_version: sync::PROTOCOL_VERSION,
                    client_id: my_id,
                    session_id: my_session,
                    mutations: theirs.iter().map(|pending| pending.to_push()).collect(),
                    first_send: false,
                };
                // Judged as the attacker's own writes; the victim's answers stay theirs.
                let _ = self.serve_push("mallory", &key, &body(&request));
                self.reported_violation(me)?;
            }
            Attack::ReadRefused { board } => {
                if self.server.allowed("mallory", board) {
                    return Ok(());
                }
                self.counts.bump("attacks: read a refused board");
                let query = self
                    .server
                    .model
                    .validate_query("boardCards", &json!({ "boardId": BOARDS[board] }))
                    .map_err(|e| Violation(e.to_string()))?;
                let request = QueryRequest {
                    protocol_version: sync::PROTOCOL_VERSION,
                    client_id: my_id.clone(),
                    session_id: my_session.clone(),
                    name: query.name.clone(),
                    args: query.args.clone(),
                    after: None,
                    window: None,
                };
                if let Ok(answer) = self.serve_query("mallory", &key, &body(&request)) {
                    violated!("mallory read {} ({} rows)", BOARDS[board], answer.rows.len());
                }
                let subscription = Subscription { name: query.name, args: query.args, cursor: None };
                let request = PullRequest {
                    protocol_version: sync::PROTOCOL_VERSION,
                    client_id: my_id,
                    session_id: my_session,
                    cursor: Cursor::START,
                    subscriptions: vec![subscription],
                };
                // A pull answers per subscription: this one is named refused, with
                // nothing of its board.
                if let Ok(page) = self.serve_pull("mallory", &key, &body(&request))
                    && (!page.changes.is_empty() || page.refused.len() != 1)
                {
                    violated!(
                        "mallory pulled {} ({} changes, {} refused)",
                        BOARDS[board],
                        page.changes.len(),
                        page.refused.len()
                    );
                }
            }
            Attack::FutureCursor => {
                self.counts.bump("attacks: future cursor");
                let head = self.server.reference.head();
                let query = self
                    .server
                    .model
                    .validate_query("boardCards", &json!({ "boardId": "b3" }))
                    .map_err(|e| Violation(e.to_string()))?;
                let request = PullRequest {
                    protocol_version: sync::PROTOCOL_VERSION,
                    client_id: my_id,
                    session_id: my_session,
                    cursor: Cursor(head.0 + 5),
                    subscriptions: vec![Subscription { name: query.name, args: query.args, cursor: None }],
                };
                if self.serve_pull("mallory", &key, &body(&request)).is_ok() {
                    violated!("a pull from beyond the head {} was answered", head.0);
                }
            }
            Attack::Oversized => {
                self.counts.bump("attacks: oversized push");
                // One card whose text alone passes the connector's body bound.
                let id = self.new_id(sync::ids::OUTBOX);
                let request = PushRequest {
                    protocol_version: sync::PROTOCOL_VERSION,
                    client_id: my_id,
                    session_id: my_session,
                    mutations: vec![sync::protocol::push::PushMutation {
                        id,
                        name: "addCard".into(),
                        args: json!({ "boardId": "b3", "author": "mallory", "body": "x".repeat(sync_server::MAX_BODY_BYTES) }),
                        record_id: "card_0".into(),
                    }],
                    first_send: false,
                };
                let head = self.server.reference.head();
                match self.serve_push("mallory", &key, &body(&request)) {
                    Err(error) if error.code() == "payload_too_large" => {}
                    other => violated!("a push over the body bound: {:?}", other.map(|_| ())),
                }
                if self.server.reference.head() != head {
                    violated!("an oversized push moved the log");
                }
            }
        }
        Ok(())
    }

    /// Carries out one step, then checks every invariant.
    pub fn step(&mut self, step: &Step) -> Result<(), Violation> {
        self.now += 10;
        // Requests served outside the network (the attacker's) leave no death behind.
        self.server.died = false;
        match step {
            Step::Write { client, kind, record, board, to, body } => {
                self.write(*client, *kind, *record, *board, *to, body)
            }
            Step::Push { client, fate } => self.send_push(*client, *fate)?,
            Step::Open { client, board, fate } => self.open_board(*client, *board, *fate)?,
            Step::Close { client, board, fate } => self.close_board(*client, *board, *fate)?,
            Step::Pull { client, fate } => self.send_pull(*client, *fate)?,
            Step::Deliver { client, pick } => {
                let to_server = !self.clients[*client].socket_out.is_empty();
                let inbox = &mut self.clients[*client].inbox;
                if to_server && (inbox.is_empty() || pick % 2 == 0) {
                    self.deliver_unwatch(*client)?;
                } else if !inbox.is_empty() {
                    let message = inbox.remove(pick % inbox.len());
                    self.handle(*client, message)?;
                }
            }
            Step::Reopen { client } => self.reopen(*client)?,
            Step::Grant { user, board } => {
                self.server.grants.insert((USERS[*user], *board));
            }
            Step::Revoke { user, board } => {
                if self.server.grants.remove(&(USERS[*user], *board)) {
                    self.counts.bump("access revoked");
                    self.server.revoked_at.insert((USERS[*user], *board), self.now);
                }
            }
            Step::DirectWrite { record, board, delete, body } => {
                self.direct_write(*record, *board, *delete, body)?
            }
            Step::Compact => self.compact()?,
            Step::Fault(fault) => {
                self.counts.bump(match fault {
                    Fault::TransientWrite => "faults: transient upstream write",
                    Fault::TransientRead => "faults: transient upstream read",
                    Fault::LostAnswer => "faults: upstream answer lost after commit",
                    Fault::CallbackDown => "faults: callback down",
                    Fault::CallbackNeedsAuth => "faults: callback 401",
                    Fault::IsolateRestart => "faults: isolate restart",
                    Fault::SessionsUnreachable => "faults: session objects unreachable",
                });
                match fault {
                    Fault::TransientWrite => self.server.db.plan(
                        Call::Write,
                        native::Fault::Transient("D1_ERROR: Network connection lost.".into()),
                    ),
                    Fault::TransientRead => self.server.db.plan(
                        Call::Read,
                        native::Fault::Transient("D1 DB is overloaded. Requests queued for too long.".into()),
                    ),
                    Fault::LostAnswer => self.server.db.plan(Call::Write, native::Fault::LostAnswer),
                    Fault::CallbackDown => self.server.callback = CallbackMode::Down,
                    Fault::CallbackNeedsAuth => self.server.callback = CallbackMode::NeedsAuth,
                    Fault::IsolateRestart => self.server.restart_next = true,
                    Fault::SessionsUnreachable => self.server.sessions_unreachable = true,
                }
            }
            Step::Upgrade => self.upgrade()?,
            Step::CallbackBack => self.sign_in_again(),
            Step::Tick { ms } => self.now += ms,
            Step::Attack(attack) => self.attack(*attack)?,
        }
        self.check()
    }

    /// The app's callbacks answer again; browsers waiting for sign-in have a new token.
    fn sign_in_again(&mut self) {
        self.server.callback = CallbackMode::Up;
        for client in &mut self.clients {
            if client.waiting_for_sign_in {
                client.waiting_for_sign_in = false;
                client.driver.signed_in();
                // Its socket opens again with a pull to catch up (which watches what
                // it reads again).
                client.pull_owed = true;
            }
        }
    }

    /// The invariants that hold after every step.
    fn check(&mut self) -> Result<(), Violation> {
        if let Some(late) = self.late_rows.first() {
            violated!("{late}");
        }
        // Cursors never go backwards (a resync starts again on purpose).
        for (index, client) in self.clients.iter_mut().enumerate() {
            let cursor = client.store.cursor().map_err(store_failed)?;
            if cursor < client.cursor && cursor != Cursor::START {
                violated!("client {index}'s cursor went back from {} to {}", client.cursor.0, cursor.0);
            }
            client.cursor = cursor;
        }
        // A browser with a socket keeps receiving pokes for every topic its session
        // watches: its QuerySubscriptions never forget it (only sessions without a
        // socket are forgotten, however their calls fail).
        for (index, client) in self.clients.iter().enumerate() {
            let session = client.driver.session_id();
            let Some(state) = self.server.sessions.get(session) else { continue };
            for topic in &state.topics {
                if !self.server.watchers.get(topic).is_some_and(|watchers| watchers.contains(session)) {
                    violated!(
                        "client {index}'s session watches {topic}, but {topic}'s subscription forgot it"
                    );
                }
            }
        }
        // A board a browser reads (its snapshot installed, allowed) is watched by its
        // session, so a write on it is poked: an unwatch that arrived after the board
        // was opened again is followed by the session's answer, on which the client
        // pulls (and the pull watches it again); a browser whose pulls wait for a
        // sign-in watches again with the pull it makes once signed in.
        for (index, client) in self.clients.iter().enumerate() {
            let session = client.driver.session_id();
            for board in client.open.iter().copied() {
                let topic = board_topic(board);
                // Refused by the app (the client learns it from its pull's answer).
                let refused = !self.server.allowed(client.user, board)
                    || client.driver.denied(&topic).is_some()
                    || self.refused_topics.contains(&(session.to_string(), topic.clone()));
                // Its pulls wait (for a sign-in, or one owed): the next one watches.
                let pull_pending = client.waiting_for_sign_in || client.pull_owed;
                if !client.driver.is_synced(&topic) || refused || pull_pending {
                    continue;
                }
                let watched =
                    self.server.sessions.get(session).is_some_and(|state| state.topics.contains(&topic));
                let answer_on_its_way = client
                    .inbox
                    .iter()
                    .any(|message| matches!(message, Message::Unwatched(topics) if topics.contains(&topic)));
                if !watched && !answer_on_its_way {
                    violated!("client {index} reads {topic}, but its session {session} does not watch it");
                }
            }
        }
        // Fan-out is bounded: per topic, a user's sessions and all sessions.
        for (topic, watchers) in &self.server.watchers {
            let users: BTreeSet<&String> =
                self.server.sessions.values().filter_map(|state| state.user.as_ref()).collect();
            for user in users {
                if watchers.of_user(user) > sync::watchers::MAX_SESSIONS_PER_USER {
                    violated!("{user} holds {} sessions on {topic}", watchers.of_user(user));
                }
            }
            if watchers.len() > sync::watchers::MAX_WATCHERS {
                violated!("{topic} has {} watchers", watchers.len());
            }
        }
        // An isolate's memo only vouches for a session's owner.
        for (isolate, memo) in self.server.isolates.iter().enumerate() {
            for (session, state) in &self.server.sessions {
                for client in &self.clients {
                    let id = client.store.client_id();
                    if memo.is_claimed(session, id) && state.owner.as_deref() != Some(id) {
                        violated!(
                            "isolate {isolate} remembers {id} as the owner of {session}, not {:?}",
                            state.owner
                        );
                    }
                }
            }
        }
        // The upstream tables and log are the reference's.
        let upstream_rows: Vec<sync::Row> = self.upstream_cards()?.iter().map(solid).collect();
        let mut reference_rows: Vec<sync::Row> =
            self.server.reference.rows("cards").iter().map(solid).collect();
        reference_rows.sort_by_key(|row| row["id"].to_string());
        if upstream_rows != reference_rows {
            violated!("upstream cards {upstream_rows:?} != reference {reference_rows:?}");
        }
        let log = self.upstream_log()?;
        // Who wrote each change too: the connector names its changes by stamping them.
        #[allow(clippy::type_complexity)]
        let expected: Vec<(u64, String, Option<sync::Row>, BTreeSet<String>, (String, String))> = self
            .server
            .reference
            .log()
            .iter()
            .map(|c| {
                (
                    c.seq.0,
                    c.record_id.clone(),
                    c.row.as_ref().map(solid),
                    c.topics.iter().map(ToString::to_string).collect(),
                    (c.client_id.clone(), c.mutation_id.clone()),
                )
            })
            .collect();
        if log
            .iter()
            .map(|(seq, record, row, topics, key)| {
                (*seq, record.clone(), row.as_ref().map(solid), topics.clone(), key.clone())
            })
            .collect::<Vec<_>>()
            != expected
        {
            violated!("upstream change log {log:?} != reference {expected:?}");
        }
        // A sequence number is handed out once: no change appears at or below a
        // number the log already showed (compaction may remove the newest change;
        // the capture triggers number past the compaction mark).
        let highest = self.seqs_seen.last().copied().unwrap_or(0);
        for (seq, ..) in &log {
            if *seq <= highest && !self.seqs_seen.contains(seq) {
                violated!(
                    "a change took sequence number {seq}, behind {highest} that clients may have passed"
                );
            }
        }
        self.seqs_seen.extend(log.iter().map(|(seq, ..)| *seq));
        // Every accepted write is in the log exactly once.
        let mut seen = BTreeSet::new();
        for (seq, _, _, _, key) in &log {
            if !key.1.is_empty() && !seen.insert(key.clone()) {
                violated!("mutation {key:?} applied twice (again at {seq})");
            }
        }
        Ok(())
    }

    /// The mutation ids of `client` the upstream holds an answer to.
    fn upstream_answered(&self, client: &str) -> Result<BTreeSet<String>, ApiError> {
        let statement = Statement {
            // A confirmed answer is its change row, stamped with the mutation.
            sql: "SELECT mutation_id FROM sync_mutations WHERE client_id = ?1 \
                  UNION SELECT mutation_id FROM sync_changes WHERE client_id = ?1 AND mutation_id <> ''"
                .into(),
            params: vec![SqlParam::Text(client.into())],
        };
        let rows = block_on(self.server.db.inner.rows(&statement))?;
        Ok(rows.iter().filter_map(|row| row.get("mutation_id")?.as_str().map(str::to_string)).collect())
    }

    fn upstream_cards(&self) -> Result<Vec<sync::Row>, Violation> {
        let cards = self.server.model.collection("cards").ok_or_else(|| Violation("no cards".into()))?;
        let statement = Statement { sql: "SELECT * FROM cards ORDER BY id".into(), params: Vec::new() };
        let rows = block_on(self.server.db.inner.rows(&statement)).map_err(|e| Violation(e.to_string()))?;
        let mut rows: Vec<sync::Row> = rows.into_iter().map(|raw| sql::decode_row(cards, raw)).collect();
        rows.sort_by_key(|row| row["id"].to_string());
        Ok(rows)
    }

    #[allow(clippy::type_complexity)]
    fn upstream_log(
        &self,
    ) -> Result<Vec<(u64, String, Option<sync::Row>, BTreeSet<String>, (String, String))>, Violation> {
        let statement = Statement {
            sql: "SELECT seq, collection, record_id, kind, row_json, topics_json, client_id, mutation_id FROM sync_changes ORDER BY seq".into(),
            params: Vec::new(),
        };
        let rows = block_on(self.server.db.inner.rows(&statement)).map_err(|e| Violation(e.to_string()))?;
        let mut log = Vec::new();
        for row in rows {
            let change = native::decode_change(&self.server.model, &row)
                .ok_or_else(|| Violation(format!("undecodable change {row:?}")))?;
            let topics: BTreeSet<String> = change.topics.iter().map(ToString::to_string).collect();
            log.push((
                change.seq.0,
                change.record_id,
                change.row,
                topics,
                (change.client_id, change.mutation_id),
            ));
        }
        Ok(log)
    }

    /// Brings the world to rest: the network heals, the app answers, every browser
    /// delivers what waits, pushes its outbox and pulls until nothing is left; then
    /// checks that nothing was lost and everyone converged on what they may read.
    pub fn settle(&mut self) -> Result<(), Violation> {
        self.sign_in_again();
        while self.server.db.pending() > 0 {
            // Faults nobody met: used up by reads that change nothing.
            let _ = block_on(self.server.db.rows(&Statement { sql: "SELECT 1".into(), params: Vec::new() }));
            let _ =
                block_on(self.server.db.write(&[Statement { sql: "SELECT 1".into(), params: Vec::new() }]));
        }
        self.now += AUTHORIZATION_FRESH_MS * 2;
        for round in 0..40 {
            // A browser told its sign-in expired gets a new token (the app's hook).
            self.sign_in_again();
            let mut busy = false;
            for index in 0..CLIENTS {
                while !self.clients[index].socket_out.is_empty() {
                    busy = true;
                    self.deliver_unwatch(index)?;
                }
                while !self.clients[index].inbox.is_empty() {
                    busy = true;
                    let message = self.clients[index].inbox.remove(0);
                    self.handle(index, message)?;
                }
                if self.clients[index].store.outbox_len().map_err(store_failed)? > 0 {
                    busy = true;
                    self.send_push(index, Fate::Delivered)?;
                    continue;
                }
                // Queries whose snapshot is missing are fetched again.
                let boards: Vec<usize> = self.clients[index].open.iter().copied().collect();
                for board in boards {
                    let topic = board_topic(board);
                    let client = &self.clients[index];
                    if client.driver.denied(&topic).is_none() && !client.driver.is_synced(&topic) {
                        busy = true;
                        self.clients[index].driver.forget(&topic);
                        self.open_board(index, board, Fate::Delivered)?;
                    }
                }
                if self.clients[index]
                    .driver
                    .pull_request(&self.clients[index].store)
                    .map_err(store_failed)?
                    .is_some()
                {
                    let before = self.clients[index].store.cursor().map_err(store_failed)?;
                    self.send_pull(index, Fate::Delivered)?;
                    while let Some(message) = self.clients[index].inbox.pop() {
                        let more = matches!(&message, Message::Pulled(_, Ok(page)) if page.has_more);
                        self.handle(index, message)?;
                        busy |= more;
                    }
                    busy |= self.clients[index].store.cursor().map_err(store_failed)? != before && round < 2;
                }
            }
            self.check()?;
            if !busy && round > 1 {
                break;
            }
        }
        for index in 0..CLIENTS {
            let client = &self.clients[index];
            // Nothing accepted is lost: every write left the outbox with an answer.
            if client.store.outbox_len().map_err(store_failed)? > 0 {
                violated!("client {index} still has writes queued at rest");
            }
            for id in &client.made {
                // A write leaves the outbox only with an answer the server gave.
                let key = (client.store.client_id().to_string(), id.clone());
                if let Some(MutationState::Resolved { outcome, .. }) =
                    client.store.mutation_state(id).map_err(store_failed)?
                    && !self.said.get(&key).is_some_and(|answers| answers.contains(&outcome))
                    && !(self.refused_by_upgrade.contains(&key)
                        && matches!(outcome, MutationOutcome::Rejected { .. }))
                {
                    violated!("client {index} resolved {id} as {outcome:?}, which the server never answered");
                }
                match client.store.mutation_state(id).map_err(store_failed)? {
                    Some(MutationState::Resolved {
                        outcome: outcome @ MutationOutcome::Confirmed { .. },
                        ..
                    }) => {
                        let kept = self.server.reference.stored_outcome(client.store.client_id(), id);
                        if !kept.is_some_and(|kept| same_answer(&outcome, kept)) {
                            violated!("client {index}'s confirmed {id} is {kept:?} on the server");
                        }
                    }
                    Some(MutationState::Resolved { .. }) => {}
                    // The store remembers the latest answers only; older ones are gone.
                    None => {}
                    Some(MutationState::Pending { .. }) => {
                        violated!("client {index}'s {id} is still pending")
                    }
                }
            }
            if index == ATTACKER {
                continue;
            }
            // Every board it has open and may read shows exactly the server's rows.
            for board in client.open.iter().copied() {
                let topic = board_topic(board);
                if !self.server.allowed(client.user, board) || client.driver.denied(&topic).is_some() {
                    continue;
                }
                let query = self
                    .server
                    .model
                    .validate_query("boardCards", &json!({ "boardId": BOARDS[board] }))
                    .map_err(|e| Violation(e.to_string()))?;
                let mut local: Vec<sync::Row> =
                    client.store.query(&query.select).map_err(store_failed)?.iter().map(solid).collect();
                local.sort_by_key(|row| row["id"].to_string());
                // As this browser's model sees them (one not reopened since an
                // upgrade knows fewer columns).
                let columns: BTreeSet<String> = client
                    .store
                    .model()
                    .collection("cards")
                    .map(|cards| cards.columns.iter().map(|column| column.name.clone()).collect())
                    .unwrap_or_default();
                let mut expected: Vec<sync::Row> = self
                    .server
                    .reference
                    .rows("cards")
                    .into_iter()
                    .filter(|row| query.select.matches(row))
                    .map(|row| {
                        solid(&row).into_iter().filter(|(column, _)| columns.contains(column)).collect()
                    })
                    .collect();
                expected.sort_by_key(|row| row["id"].to_string());
                if local != expected {
                    violated!(
                        "client {index} ({}) shows {} as {local:?}, the server has {expected:?}",
                        client.user,
                        BOARDS[board]
                    );
                }
            }
        }
        Ok(())
    }
}

/// Whether `told` is the answer the server keeps (`kept`): the same, or the same
/// confirmed image given again after a migration added columns (with their values).
fn same_answer(told: &MutationOutcome, kept: &MutationOutcome) -> bool {
    match (told, kept) {
        // Given again (a replay), a stored answer comes without its image.
        (
            MutationOutcome::Confirmed { row: None, seq: told_seq },
            MutationOutcome::Confirmed { seq: kept_seq, .. },
        ) => told_seq == kept_seq,
        (
            MutationOutcome::Confirmed { row: Some(told_row), seq: told_seq },
            MutationOutcome::Confirmed { row: Some(kept_row), seq: kept_seq },
        ) => {
            told_seq == kept_seq && kept_row.iter().all(|(column, value)| told_row.get(column) == Some(value))
        }
        _ => told == kept,
    }
}

/// A row without its null cells: a column a row lacks reads as null (an upgrade adds
/// columns without rewriting the rows or their logged images).
fn solid(row: &sync::Row) -> sync::Row {
    row.iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(column, value)| (column.clone(), value.clone()))
        .collect()
}

fn store_failed(error: sync_store::StoreError) -> Violation {
    Violation(format!("the local store failed: {error}"))
}
