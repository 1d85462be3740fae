//! Adds up the pass/fail counts every test runner prints, so `xtask test` can close
//! with one line for the whole suite.

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// The names of failed tests as the runners print them, so the last lines of
    /// a long log say which test failed (CI keeps only part of the output).
    pub failures: Vec<String>,
}

/// Keeps a runaway failure list from flooding the closing lines.
const FAILURES_NAMED: usize = 30;

impl Counts {
    /// Reads one line of runner output. Understands cargo's / wasm-bindgen-test's
    /// `test result: ok. 3 passed; 1 failed; 2 ignored; ...` and node's TAP
    /// `# pass 3` / `# fail 1` / `# skipped 2`.
    pub fn observe(&mut self, line: &str) {
        let line = line.trim();
        if let Some(name) = failed_test(line)
            && self.failures.len() < FAILURES_NAMED
            && !self.failures.iter().any(|seen| seen == name)
        {
            self.failures.push(name.to_string());
        }
        if let Some(rest) = line.strip_prefix("test result:") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(label), Some(number)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(number) = number.parse::<u64>() else { continue };
                match label {
                    "passed" => self.passed += number,
                    "failed" => self.failed += number,
                    "ignored" => self.skipped += number,
                    _ => {}
                }
            }
        } else if let Some((number, label)) = playwright_line(line) {
            match label {
                "passed" | "flaky" => self.passed += number,
                "failed" | "interrupted" | "did not run" => self.failed += number,
                "skipped" => self.skipped += number,
                _ => {}
            }
        } else if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.split_whitespace();
            let (Some(label), Some(number), None) = (words.next(), words.next(), words.next()) else {
                return;
            };
            let Ok(number) = number.parse::<u64>() else { return };
            match label {
                "pass" => self.passed += number,
                "fail" => self.failed += number,
                "skipped" | "todo" => self.skipped += number,
                _ => {}
            }
        }
    }

    pub fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        for name in other.failures {
            if self.failures.len() < FAILURES_NAMED {
                self.failures.push(name);
            }
        }
    }
}

/// A failed test's name: cargo's `test a::b ... FAILED`, node's TAP `not ok 3 - name`
/// (top level only: a failed subtest also fails its parent), Playwright's list
/// reporter `✘  3 file:line › title (1.2s)`.
fn failed_test(line: &str) -> Option<&str> {
    if let Some(rest) = line.strip_prefix("test ") {
        return rest.strip_suffix(" ... FAILED");
    }
    if let Some(rest) = line.strip_prefix("not ok ") {
        return rest.split_once(" - ").map(|(_, name)| name.trim_end_matches(" # TODO"));
    }
    let rest = line.strip_prefix('✘')?.trim_start();
    let (_, title) = rest.split_once(' ')?;
    // Playwright prints the duration in parentheses, and `(retry #1)` on retries.
    Some(title.rsplit_once(" (").map_or(title, |(title, _)| title).trim())
}

/// Playwright's closing summary: `5 passed (9.9s)`, `1 failed`, `2 skipped`,
/// `1 flaky`, `3 did not run`, `1 interrupted` (a line of its own, indented).
fn playwright_line(line: &str) -> Option<(u64, &str)> {
    let (number, rest) = line.split_once(' ')?;
    let number = number.parse::<u64>().ok()?;
    let label = rest.split(" (").next()?.trim();
    ["passed", "failed", "skipped", "flaky", "did not run", "interrupted"]
        .contains(&label)
        .then_some((number, label))
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn reads_cargo_and_node_summaries() {
        let mut counts = Counts::default();
        for line in [
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            "# tests 5",
            "# pass 4",
            "# fail 1",
            "# skipped 0",
            "# Subtest: pass 3 things",
            "running 2 tests",
            // Playwright's closing lines (list reporter).
            "  5 passed (9.9s)",
            "  1 failed",
            "    end2end/board.spec.mjs:43:1 › two browsers on one board",
            "  2 skipped",
            "Running 8 tests using 1 worker",
        ] {
            counts.observe(line);
        }
        assert_eq!((counts.passed, counts.failed, counts.skipped), (24, 4, 3));
        assert!(counts.failures.is_empty());
    }

    #[test]
    fn names_failed_tests_of_each_runner() {
        let mut counts = Counts::default();
        for line in [
            "test store::tests::keeps_order ... FAILED",
            "test store::tests::other ... ok",
            "not ok 12 - a refused write leaves nothing",
            "ok 13 - fine",
            "  ✘  3 end2end/board.spec.mjs:99:1 › a message is refused (1.6s)",
            "  ✓  4 end2end/board.spec.mjs:120:1 › fine (1.0s)",
            "  ✘  3 end2end/board.spec.mjs:99:1 › a message is refused (1.6s)",
        ] {
            counts.observe(line);
        }
        assert_eq!(
            counts.failures,
            [
                "store::tests::keeps_order",
                "a refused write leaves nothing",
                "end2end/board.spec.mjs:99:1 › a message is refused",
            ]
        );
    }
}
