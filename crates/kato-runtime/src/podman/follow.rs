//! Following a container's log by reading podman's `k8s-file` log itself.
//!
//! `podman logs --follow` polls that file and hands lines on up to ~0.9 s after they were
//! written; read here, a line is handed on as soon as the kernel says the file changed. The
//! stream ends when the container stops (`podman wait` returns, then what is left is read) or
//! when the reader drops it, which drops the watcher and kills `podman wait`.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::os::unix::fs::{FileExt, MetadataExt};

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::cri::CriParser;
use super::*;

/// Without file events (no inotify instance left, say), how often the file is looked at.
/// Measured on podman 4.3 (BENCHMARKS.md, Console): with inotify a line written in a container
/// reaches the console's page in p99 10 ms (`podman logs --follow`: p50 130 ms, p99 250 ms), so
/// file events are the way; a 25 ms look is the fallback and still well inside 250 ms.
const POLL: Duration = Duration::from_millis(25);
/// With file events, a look now and then anyway, so a missed event costs a second, not a line.
const SAFETY_LOOK: Duration = Duration::from_secs(1);
/// The most of the file read backwards to find the last lines asked for.
const TAIL_WINDOW_MAX: u64 = 16 << 20;
const CHUNK: usize = 64 << 10;

/// How podman keeps a container's log (`HostConfig.LogConfig` of `podman container inspect`).
#[derive(Debug, Deserialize)]
struct LogConfig {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Path", default)]
    path: String,
}

impl PodmanRuntime {
    /// The container's log file when podman writes it with the `k8s-file` driver.
    pub(super) async fn k8s_log_file(&self, id: &str) -> Result<Option<PathBuf>, RuntimeError> {
        let a = args(["container", "inspect", "--format", "{{json .HostConfig.LogConfig}}", id]);
        let out = self.run(&a, None, self.config.call_timeout).await?;
        let config: LogConfig = parse_json(out.trim())?;
        Ok((config.kind == "k8s-file" && !config.path.is_empty()).then(|| PathBuf::from(config.path)))
    }

    /// Streams the log at `path` of container `id`: the last `tail` lines (all without it), then
    /// each line as it is written, until the container stops.
    pub(super) async fn follow_file(
        &self,
        id: &str,
        path: PathBuf,
        tail: Option<u32>,
    ) -> Result<LogStream, RuntimeError> {
        // Watching and waiting begin before the first read, so nothing written after it is missed.
        let wake = watch(&path);
        let mut cmd = self.command();
        cmd.args(["wait", id]);
        let wait = cmd.spawn().map_err(io_error)?;
        let file = std::fs::File::open(&path).map_err(io_error)?;
        let ino = file.metadata().map_err(io_error)?.ino();
        let (file, ready, offset, parser) = tokio::task::spawn_blocking(move || {
            let end = file.metadata()?.len();
            let (ready, parser, offset) = match tail {
                Some(n) => {
                    let (lines, parser) = tail_lines(&file, end, n as usize)?;
                    (lines, parser, end)
                }
                None => (Vec::new(), CriParser::new(), 0),
            };
            Ok::<_, std::io::Error>((file, ready, offset, parser))
        })
        .await
        .map_err(|e| engine(format!("reading the log failed: {e}")))?
        .map_err(io_error)?;
        let mut file = tokio::fs::File::from_std(file);
        file.seek(SeekFrom::Start(offset)).await.map_err(io_error)?;
        let follow = Follow {
            path,
            file,
            ino,
            offset,
            parser,
            ready: ready.into(),
            wake,
            wait,
            exited: false,
            done: false,
        };
        Ok(futures::stream::unfold(follow, Follow::next).boxed())
    }
}

/// File events for the log's folder (conmon may replace the file there), or `None` to poll.
fn watch(path: &Path) -> Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher;
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Full means a wake-up is already due; opening or reading the file is no news.
        if !matches!(event, Ok(ref e) if e.kind.is_access()) {
            let _ = tx.try_send(());
        }
    })
    .ok()?;
    watcher
        .watch(path.parent()?, notify::RecursiveMode::NonRecursive)
        .ok()?;
    Some((watcher, rx))
}

/// The last `n` lines of the first `end` bytes, read backwards in growing windows, and the
/// parser to go on from `end` with.
pub(super) fn tail_lines(file: &std::fs::File, end: u64, n: usize) -> std::io::Result<(Vec<Bytes>, CriParser)> {
    let mut window = CHUNK as u64;
    loop {
        let start = end.saturating_sub(window);
        let mut data = vec![0; (end - start) as usize];
        file.read_exact_at(&mut data, start)?;
        let mut parser = if start == 0 {
            CriParser::new()
        } else {
            CriParser::mid_file()
        };
        let mut lines = Vec::new();
        parser.push(&data, &mut lines);
        let last = &lines[lines.len().saturating_sub(n)..];
        // Sure when every line kept began inside the window and none still open began before it.
        let sure = lines.len() >= n && !last.iter().any(|l| l.cut) && (n == 0 || !parser.has_cut_pending());
        if start == 0 || sure || window >= TAIL_WINDOW_MAX {
            return Ok((last.iter().map(|l| l.text.clone()).collect(), parser));
        }
        window *= 4;
    }
}

/// The state of one followed log.
struct Follow {
    path: PathBuf,
    file: tokio::fs::File,
    /// The inode read, to notice the file being replaced.
    ino: u64,
    offset: u64,
    parser: CriParser,
    ready: VecDeque<Bytes>,
    wake: Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)>,
    /// `podman wait`: returns when the container stops; killed when the stream is dropped.
    wait: tokio::process::Child,
    exited: bool,
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Bytes, RuntimeError>, Self)> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some((Ok(line), self));
            }
            if self.done {
                return None;
            }
            match self.read().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.done = true;
                    return Some((Err(io_error(e)), self));
                }
            }
            if self.exited {
                // Read to the end after the container stopped: conmon wrote all before that.
                let mut out = Vec::new();
                self.parser.finish(&mut out);
                self.ready.extend(out.into_iter().map(|l| l.text));
                self.done = true;
                continue;
            }
            if self.reopen_if_replaced().await {
                continue;
            }
            let look = if self.wake.is_some() { SAFETY_LOOK } else { POLL };
            let wake = &mut self.wake;
            let woken = async {
                match wake {
                    Some((_, rx)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let exited = tokio::select! {
                _ = woken => false,
                _ = self.wait.wait() => true,
                () = tokio::time::sleep(look) => false,
            };
            self.exited = exited;
        }
    }

    /// Reads what was added; true when something was.
    async fn read(&mut self) -> std::io::Result<bool> {
        let mut buf = vec![0; CHUNK];
        let n = self.file.read(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        self.offset += n as u64;
        let mut lines = Vec::new();
        self.parser.push(&buf[..n], &mut lines);
        self.ready.extend(lines.into_iter().map(|l| l.text));
        Ok(true)
    }

    /// Starts over when the file was truncated or replaced (a size limit in containers.conf
    /// makes conmon do either); true when it did.
    async fn reopen_if_replaced(&mut self) -> bool {
        let Ok(meta) = tokio::fs::metadata(&self.path).await else {
            // Removed with its container: `podman wait` returns next.
            return false;
        };
        if meta.ino() != self.ino {
            let Ok(file) = tokio::fs::File::open(&self.path).await else {
                return false;
            };
            self.file = file;
            self.ino = meta.ino();
        } else if meta.len() < self.offset {
            if self.file.seek(SeekFrom::Start(0)).await.is_err() {
                return false;
            }
        } else {
            return false;
        }
        self.offset = 0;
        self.parser = CriParser::new();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-12-03T17:04:26.243690643+00:00";

    fn log_file(records: &[String]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, records.concat().as_bytes()).unwrap();
        let len = f.as_file().metadata().unwrap().len();
        (f, len)
    }

    fn tail(records: &[String], n: usize) -> Vec<String> {
        let (f, len) = log_file(records);
        let (lines, _) = tail_lines(f.as_file(), len, n).unwrap();
        lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect()
    }

    #[test]
    fn the_tail_is_the_last_lines_whole() {
        let mut records: Vec<String> = (0..20_000).map(|i| format!("{T} stdout F line {i}\n")).collect();
        // The last lines: one of stderr, one in pieces far apart, one that began long before.
        records.insert(100, format!("{T} stderr P began long "));
        records[100].push('\n');
        records.push(format!("{T} stdout P jo\n"));
        records.extend((0..5_000).map(|i| format!("{T} stderr P {i}\n")));
        records.push(format!("{T} stdout F ined\n"));
        records.push(format!("{T} stderr F ago\n"));
        let got = tail(&records, 3);
        assert_eq!(got[0], "line 19999\n");
        assert_eq!(got[1], "joined\n");
        assert!(got[2].starts_with("began long 01234") && got[2].ends_with("4999ago\n"));

        assert_eq!(tail(&records[..3], 10).len(), 3, "fewer lines than asked: all of them");
        assert!(tail(&records, 0).is_empty());
    }

    #[test]
    fn following_goes_on_where_the_tail_stopped() {
        let records = [format!("{T} stdout F a\n"), format!("{T} stdout P b")];
        let (f, len) = log_file(&records);
        let (lines, mut parser) = tail_lines(f.as_file(), len, 5).unwrap();
        assert_eq!(lines, [Bytes::from_static(b"a\n")]);
        let mut out = Vec::new();
        parser.push(format!("\n{T} stdout F c\n").as_bytes(), &mut out);
        assert_eq!(out[0].text, Bytes::from_static(b"bc\n"));
    }
}
