//! Tabs that come and go, natively: several tabs share one store through the real
//! hand-over rules (`sync_client::tabs::Tabs`), the leader dies at random moments
//! (with requests half served, replies unsent and traffic in flight), and each run
//! checks that every page that stays open gets exactly one answer to every request and
//! that every write a page was told about is in the store exactly once.

#[path = "../../serverless-sync/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sync::model::MutationContext;
use sync_client::bridge::{FromWorker, Reply, Request, TabMessage};
use sync_client::tabs::{TabAction, Tabs};
use sync_store::{LocalStore, StoreError};

/// A small deterministic generator (the run is a function of its seed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

struct Tab {
    rules: Tabs,
    /// Serving in progress (a leader's async work): lost if the tab dies.
    work: VecDeque<(u32, Request, Option<String>)>,
    /// What reached this tab's page: request id -> replies.
    replies: BTreeMap<u32, usize>,
    asked: BTreeSet<u32>,
    /// Mutation ids this page was told were written.
    told: BTreeSet<String>,
}

struct Browser {
    tabs: BTreeMap<usize, Tab>,
    /// In order of joining: who gets the lock next.
    line: VecDeque<usize>,
    /// Traffic on the channel: (sender, what it says), delivered in order to the others.
    channel: VecDeque<(usize, TabMessage)>,
    store: LocalStore,
    next_tab: usize,
    next_request: u32,
}

impl Browser {
    fn open_tab(&mut self) {
        let index = self.next_tab;
        self.next_tab += 1;
        let tab = Tab {
            rules: Tabs::new(format!("tab{index}")),
            work: VecDeque::new(),
            replies: BTreeMap::new(),
            asked: BTreeSet::new(),
            told: BTreeSet::new(),
        };
        self.tabs.insert(index, tab);
        self.line.push_back(index);
        if self.line.len() == 1 {
            self.take_over(index);
        }
    }

    fn take_over(&mut self, index: usize) {
        let tab = self.tabs.get_mut(&index).expect("a live tab");
        let role = tab.rules.become_leader();
        let mut actions = vec![role];
        actions.extend(tab.rules.announce());
        self.carry_out(index, actions);
    }

    fn carry_out(&mut self, index: usize, actions: Vec<TabAction>) {
        for action in actions {
            match action {
                TabAction::Serve { id, request, for_tab } => {
                    self.tabs.get_mut(&index).expect("live").work.push_back((id, request, for_tab));
                }
                TabAction::Broadcast(message) => self.channel.push_back((index, message)),
                TabAction::Post(FromWorker::Reply { id, result }) => self.reply_to_page(index, id, result),
                TabAction::Post(_) => {}
            }
        }
    }

    fn reply_to_page(&mut self, index: usize, id: u32, result: Result<Reply, String>) {
        let tab = self.tabs.get_mut(&index).expect("live");
        *tab.replies.entry(id).or_default() += 1;
        if let Ok(Reply::Mutated { mutation_id, .. }) = result {
            tab.told.insert(mutation_id);
        }
    }

    fn leader(&self) -> Option<usize> {
        self.line.front().copied()
    }

    /// The page of tab `index` writes.
    fn page_writes(&mut self, index: usize) {
        self.next_request += 1;
        let id = self.next_request;
        let request = Request::Mutate {
            name: "addCard".into(),
            args: serde_json::json!({ "boardId": "b1", "author": "ada", "body": format!("card {id}") }),
            mutation_id: format!("outbox_{id:026}"),
            record_id: format!("card_{id}"),
            now_ms: Some(1_000),
        };
        let tab = self.tabs.get_mut(&index).expect("live");
        tab.asked.insert(id);
        let actions = tab.rules.from_page(id, request);
        self.carry_out(index, actions);
    }

    /// The leader finishes one request: applies it to the store and answers.
    fn serve_one(&mut self) {
        let Some(leader) = self.leader() else { return };
        let Some((id, request, for_tab)) = self.tabs.get_mut(&leader).expect("live").work.pop_front() else {
            return;
        };
        let Request::Mutate { name, args, mutation_id, record_id, now_ms } = request else { return };
        let ctx = MutationContext {
            client_id: self.store.client_id().to_string(),
            record_id: record_id.clone(),
            now_ms: now_ms.unwrap_or(0),
        };
        let result = match self.store.mutate(&mutation_id, &name, &args, &ctx) {
            Ok(_) | Err(StoreError::Duplicate { .. }) => {
                Ok(Reply::Mutated { mutation_id, record_id, local_write_ms: 0.0 })
            }
            Err(error) => Err(error.to_string()),
        };
        match for_tab {
            None => self.reply_to_page(leader, id, result),
            Some(tab) => self.channel.push_back((leader, TabMessage::Reply { tab, id, result })),
        }
    }

    /// The channel delivers its oldest message to every other live tab.
    fn deliver(&mut self) {
        let Some((from, message)) = self.channel.pop_front() else { return };
        let others: Vec<usize> = self.tabs.keys().copied().filter(|index| *index != from).collect();
        for index in others {
            let actions = self.tabs.get_mut(&index).expect("live").rules.from_tab(message.clone());
            self.carry_out(index, actions);
        }
    }

    /// The leader's tab closes: its work and what it had not sent yet go
    /// with it; the next tab in line gets the lock.
    fn leader_dies(&mut self) {
        let Some(leader) = self.line.pop_front() else { return };
        self.tabs.remove(&leader);
        self.channel.retain(|(from, _)| *from != leader);
        if let Some(next) = self.leader() {
            self.take_over(next);
        }
    }

    fn quiet(&self) -> bool {
        self.channel.is_empty() && self.tabs.values().all(|tab| tab.work.is_empty())
    }
}

fn run(seed: u64) -> Result<(), String> {
    let conn = sync_store::Connection::open_in_memory().map_err(|e| e.to_string())?;
    let store =
        LocalStore::open(conn, common::model(), || "client_tabs".into()).map_err(|e| e.to_string())?;
    let mut browser = Browser {
        tabs: BTreeMap::new(),
        line: VecDeque::new(),
        channel: VecDeque::new(),
        store,
        next_tab: 0,
        next_request: 0,
    };
    let mut rng = Rng(seed);
    for _ in 0..3 {
        browser.open_tab();
    }
    for _ in 0..200 {
        match rng.below(10) {
            0..=3 => {
                let live: Vec<usize> = browser.tabs.keys().copied().collect();
                let index = live[rng.below(live.len() as u64) as usize];
                browser.page_writes(index);
            }
            4..=5 => browser.serve_one(),
            6..=7 => browser.deliver(),
            8 if browser.tabs.len() > 1 => browser.leader_dies(),
            _ => browser.open_tab(),
        }
    }
    // At rest: nobody dies any more.
    let mut rounds = 0;
    while !browser.quiet() {
        browser.serve_one();
        browser.deliver();
        rounds += 1;
        if rounds > 10_000 {
            return Err("the tabs never came to rest".into());
        }
    }
    let stored: BTreeSet<String> = browser
        .store
        .outbox(10_000)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|pending| pending.id)
        .collect();
    for (index, tab) in &browser.tabs {
        for id in &tab.asked {
            match tab.replies.get(id) {
                Some(1) => {}
                other => return Err(format!("tab {index}'s request {id} got {other:?} replies")),
            }
        }
        if tab.rules.waiting() != 0 {
            return Err(format!("tab {index} still waits for {} replies", tab.rules.waiting()));
        }
        for mutation in &tab.told {
            if !stored.contains(mutation) {
                return Err(format!("tab {index} was told {mutation} was written; the store lacks it"));
            }
        }
    }
    Ok(())
}

#[test]
fn tabs_that_die_lose_no_answer_and_apply_no_write_twice() {
    for seed in 0..300 {
        if let Err(failure) = run(seed) {
            panic!("seed {seed}: {failure}");
        }
    }
}
