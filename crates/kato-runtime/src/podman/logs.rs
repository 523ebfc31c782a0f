//! A component's logs: the pod found by name and checked by labels, the container by its id;
//! followed from podman's log file where it can be ([`super::follow`]), else from `podman logs`.

use super::*;

impl PodmanRuntime {
    /// The log of one container of the component's pod, streamed as podman writes it.
    pub(super) async fn log_stream(
        &self,
        c: ComponentRef<'_>,
        request: LogsRequest,
    ) -> Result<LogStream, RuntimeError> {
        // Asked for by name (one call where a listing and an inspect were two); listed by labels
        // only when no pod of the component has that name, e.g. one named by an older Kato.
        let named = kato_render::names::podman_pod_name(c.team, c.component);
        let (pod, inspect) = match self.inspect_pod(&named, c).await? {
            Some(inspect) => (named, inspect),
            None => {
                let mut found = None;
                for pod in self.pods(c).await? {
                    if let Some(inspect) = self.inspect_pod(&pod, c).await? {
                        found = Some((pod, inspect));
                        break;
                    }
                }
                found.ok_or_else(|| RuntimeError::NotRunning(c.component.to_owned()))?
            }
        };
        // The containers of this very pod, by id: a name could be reused meanwhile.
        let prefix = format!("{pod}-");
        let known: Vec<(String, String)> = inspect
            .containers
            .into_iter()
            .filter(|ctr| ctr.id != inspect.infra_container_id)
            .filter_map(|ctr| Some((ctr.name.strip_prefix(&prefix)?.to_owned(), ctr.id)))
            .collect();
        let name = request.container.clone().unwrap_or_else(|| c.component.to_owned());
        let Some((_, id)) = known.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
            return Err(RuntimeError::NoSuchContainer {
                name,
                known: names.join(", "),
            });
        };
        if request.follow
            && let Some(path) = self.k8s_log_file(id).await?
        {
            return self.follow_file(id, path, request.tail).await;
        }
        self.podman_logs(id, &request)
    }

    /// `podman logs`, for a log that is not followed or not in a `k8s-file`.
    fn podman_logs(&self, id: &str, request: &LogsRequest) -> Result<LogStream, RuntimeError> {
        let mut a = args(["logs"]);
        if let Some(n) = request.tail {
            a.push(format!("--tail={n}").into());
        }
        if request.follow {
            a.push("--follow".into());
        }
        a.push(id.into());
        let mut cmd = self.command();
        cmd.args(&a);
        let mut child = cmd.spawn().map_err(io_error)?;
        let stdout = child.stdout.take().map(reader_stream);
        let stderr = child.stderr.take().map(|s| {
            reader_stream(s).filter_map(|chunk| async move {
                match chunk {
                    Ok(b) => {
                        let text = String::from_utf8_lossy(&b);
                        let kept: String = text
                            .split_inclusive('\n')
                            .filter(|l| !l.starts_with("failed to connect to syslog"))
                            .collect();
                        (!kept.is_empty()).then(|| Ok(Bytes::from(kept)))
                    }
                    Err(e) => Some(Err(e)),
                }
            })
        });
        let merged = futures::stream::select(
            stdout
                .map(StreamExt::boxed)
                .unwrap_or_else(|| futures::stream::empty().boxed()),
            stderr
                .map(StreamExt::boxed)
                .unwrap_or_else(|| futures::stream::empty().boxed()),
        );
        // The child lives as long as the stream: hanging up kills `podman logs -f`.
        let guarded = futures::stream::unfold((merged, child), |(mut s, child)| async move {
            s.next().await.map(|item| (item, (s, child)))
        });
        Ok(guarded.boxed())
    }
}

/// Bytes of a pipe, chunk by chunk, line-aligned when lines fit in a chunk.
fn reader_stream(r: impl tokio::io::AsyncRead + Send + Unpin + 'static) -> LogStream {
    use tokio::io::AsyncBufReadExt;
    let reader = tokio::io::BufReader::new(r);
    futures::stream::unfold(reader, |mut reader| async move {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(Bytes::from(line)), reader)),
            Err(e) => Some((Err(io_error(e)), reader)),
        }
    })
    .boxed()
}
