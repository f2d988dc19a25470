//! "Run this bench binary again as a child": the one way the benches start
//! their servers, nodes and clients. A [`Child`] is the same executable with
//! a role in its environment; it talks over stdin/stdout lines and is killed
//! by PID when dropped (and, through [`super::sys::die_with_parent`] on its
//! side, dies with the bench).

use std::{
    io::{self, BufRead, BufReader, Write as _},
    process::{ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// A child process of this binary with its stdin and its stdout as lines.
pub struct Child {
    name: String,
    child: std::process::Child,
    // Only the scale bench's clients take commands.
    #[allow(dead_code)]
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Child {
    /// Starts this executable again with `envs` set; `name` is for errors.
    pub fn spawn(name: impl Into<String>, envs: &[(&str, String)]) -> io::Result<Child> {
        let mut command = Command::new(std::env::current_exe()?);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("child has no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Child {
            name: name.into(),
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line, which must start with the word `want`; the words
    /// after it. Fails with what the child said instead, or when it says
    /// nothing within `wait` (it died or hung).
    pub fn expect(&self, want: &str, wait: Duration) -> io::Result<Vec<String>> {
        let line = self.lines.recv_timeout(wait).map_err(|_| {
            io::Error::other(format!(
                "{} said nothing (waiting for {want}; it died or hung)",
                self.name
            ))
        })?;
        let mut words = line.split_whitespace().map(str::to_owned);
        if words.next().as_deref() != Some(want) {
            return Err(io::Error::other(format!("{}: {line}", self.name)));
        }
        Ok(words.collect())
    }

    /// Writes one line to the child's stdin.
    #[allow(dead_code)]
    pub fn tell(&mut self, line: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("child has no stdin"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
