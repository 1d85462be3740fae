//! One tab's part in sharing the database between tabs, without I/O: what to do with
//! the page's requests and what the other tabs say, and what to do on taking over as
//! the leader. The worker runtime carries the answers out (Web Lock, BroadcastChannel,
//! the store); the native tests drive the same type with tabs that die.
//!
//! Rules:
//! - the leader serves every request itself (its page's, and other tabs' forwarded
//!   ones, answered on the channel to their tab);
//! - a follower forwards its page's request and keeps it until its reply comes: a
//!   leader that dies unanswered loses nothing, because the next leader's
//!   announcement makes every follower send what it keeps again, and a tab that takes
//!   over serves what it kept itself;
//! - sending a request again is safe: queries are reads, and a mutation carries ids
//!   chosen by the page, which the store recognises (answered, not re-applied);
//! - a reply is passed to the page once (the first; a late duplicate is dropped);
//! - the page's sign-in token is kept while following: the tab may take over.

use std::collections::BTreeMap;

use crate::bridge::{FromWorker, Request, TabMessage};

#[derive(Debug, Clone)]
pub struct Tabs {
    tab: String,
    leader: bool,
    /// The page's requests sent to the leader and not answered yet, by request id.
    forwarded: BTreeMap<u32, Request>,
    page_token: Option<String>,
    announced_follower: bool,
}

/// What the worker does.
#[derive(Debug, Clone, PartialEq)]
pub enum TabAction {
    /// Handle `request` with the store, then reply to this tab's page (`for_tab:
    /// None`) or on the channel to `for_tab`.
    Serve { id: u32, request: Request, for_tab: Option<String> },
    /// Send on the tabs' channel.
    Broadcast(TabMessage),
    /// Post to this tab's page.
    Post(FromWorker),
}

impl Tabs {
    pub fn new(tab: impl Into<String>) -> Self {
        Self {
            tab: tab.into(),
            leader: false,
            forwarded: BTreeMap::new(),
            page_token: None,
            announced_follower: false,
        }
    }

    pub fn tab(&self) -> &str {
        &self.tab
    }

    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The page's last sign-in token (kept while following).
    pub fn page_token(&self) -> Option<&str> {
        self.page_token.as_deref()
    }

    /// Requests sent to the leader and not answered yet.
    pub fn waiting(&self) -> usize {
        self.forwarded.len()
    }

    /// This tab's page asked something.
    pub fn from_page(&mut self, id: u32, request: Request) -> Vec<TabAction> {
        if let Request::Start { token, .. } = &request {
            self.page_token = Some(token.clone());
        }
        if self.leader {
            return vec![TabAction::Serve { id, request, for_tab: None }];
        }
        self.forwarded.insert(id, request.clone());
        vec![TabAction::Broadcast(TabMessage::Request { tab: self.tab.clone(), id, request })]
    }

    /// Another tab said something on the channel.
    pub fn from_tab(&mut self, message: TabMessage) -> Vec<TabAction> {
        match message {
            TabMessage::Request { tab, id, request } if self.leader => {
                vec![TabAction::Serve { id, request, for_tab: Some(tab) }]
            }
            TabMessage::Reply { tab, id, result } if !self.leader && tab == self.tab => {
                if self.forwarded.remove(&id).is_none() {
                    return Vec::new();
                }
                let mut actions = Vec::new();
                if !std::mem::replace(&mut self.announced_follower, true) {
                    actions.push(TabAction::Post(FromWorker::Role { leader: false }));
                }
                actions.push(TabAction::Post(FromWorker::Reply { id, result }));
                actions
            }
            TabMessage::Event { event } if !self.leader => vec![TabAction::Post(event)],
            TabMessage::Leader { tab } if !self.leader && tab != self.tab => {
                let mut actions: Vec<TabAction> = self
                    .forwarded
                    .iter()
                    .map(|(id, request)| {
                        TabAction::Broadcast(TabMessage::Request {
                            tab: self.tab.clone(),
                            id: *id,
                            request: request.clone(),
                        })
                    })
                    .collect();
                // The page's views read again from the new leader's store.
                actions.push(TabAction::Post(FromWorker::Changed {
                    collections: Vec::new(),
                    records: None,
                    sent_at: None,
                    poke_timing: None,
                }));
                actions
            }
            _ => Vec::new(),
        }
    }

    /// This tab holds the lock now. Once the store is open, the worker announces it
    /// and serves what the page asked while this tab followed ([`Self::announce`]).
    pub fn become_leader(&mut self) -> TabAction {
        self.leader = true;
        TabAction::Post(FromWorker::Role { leader: true })
    }

    /// After opening the store: tell the other tabs, serve what this page kept, and
    /// have every page read its queries again from this store.
    pub fn announce(&mut self) -> Vec<TabAction> {
        let mut actions = vec![TabAction::Broadcast(TabMessage::Leader { tab: self.tab.clone() })];
        actions.extend(
            std::mem::take(&mut self.forwarded).into_iter().map(|(id, request)| TabAction::Serve {
                id,
                request,
                for_tab: None,
            }),
        );
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::Reply;

    fn mutate(id: &str) -> Request {
        Request::Mutate {
            name: "add".into(),
            args: serde_json::json!({}),
            mutation_id: id.into(),
            record_id: "r".into(),
            now_ms: None,
        }
    }

    #[test]
    fn a_follower_forwards_keeps_until_answered_and_sends_again_to_a_new_leader() {
        let mut tab = Tabs::new("t2");
        let sent = tab.from_page(7, mutate("m1"));
        assert_eq!(
            sent,
            vec![TabAction::Broadcast(TabMessage::Request {
                tab: "t2".into(),
                id: 7,
                request: mutate("m1")
            })]
        );
        // The leader died unanswered; another tab announces itself.
        let again = tab.from_tab(TabMessage::Leader { tab: "t3".into() });
        assert_eq!(again[0], sent[0]);
        assert!(matches!(again[1], TabAction::Post(FromWorker::Changed { .. })));
        let reply = || TabMessage::Reply {
            tab: "t2".into(),
            id: 7,
            result: Ok(Reply::Mutated {
                mutation_id: "m1".into(),
                record_id: "r".into(),
                local_write_ms: 0.0,
            }),
        };
        let passed = tab.from_tab(reply());
        assert_eq!(passed.len(), 2, "the first reply says this tab follows, then answers");
        assert!(tab.from_tab(reply()).is_empty(), "a late duplicate reply is dropped");
        assert_eq!(tab.waiting(), 0);
    }

    #[test]
    fn a_tab_that_takes_over_serves_what_it_kept_and_then_serves_others() {
        let mut tab = Tabs::new("t2");
        tab.from_page(1, Request::Start { token: "tok".into(), query_ttl_ms: None });
        tab.from_page(2, mutate("m1"));
        assert_eq!(tab.become_leader(), TabAction::Post(FromWorker::Role { leader: true }));
        let actions = tab.announce();
        assert_eq!(actions[0], TabAction::Broadcast(TabMessage::Leader { tab: "t2".into() }));
        assert_eq!(actions.len(), 3);
        assert_eq!(tab.page_token(), Some("tok"));
        let served = tab.from_tab(TabMessage::Request { tab: "t1".into(), id: 5, request: mutate("m2") });
        assert_eq!(
            served,
            vec![TabAction::Serve { id: 5, request: mutate("m2"), for_tab: Some("t1".into()) }]
        );
        // A leader ignores replies and events (its own, echoed by nobody).
        assert!(tab.from_tab(TabMessage::Leader { tab: "t9".into() }).is_empty());
    }
}
