//! `--target none`: render only.

use async_trait::async_trait;
use kato_render::Rendered;

use crate::{ComponentRef, ComponentStatus, LogStream, LogsRequest, Runtime, RuntimeError, TargetKind};

/// The target of a server that only renders: deploy and logs are refused, status is `stopped`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoneRuntime;

#[async_trait]
impl Runtime for NoneRuntime {
    fn kind(&self) -> TargetKind {
        TargetKind::None
    }
    async fn deploy(&self, _: ComponentRef<'_>, _: &Rendered) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotSupported)
    }
    async fn stop(&self, _: ComponentRef<'_>) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotSupported)
    }
    async fn status(&self, _: ComponentRef<'_>) -> Result<ComponentStatus, RuntimeError> {
        Ok(ComponentStatus::stopped())
    }
    async fn logs(&self, _: ComponentRef<'_>, _: LogsRequest) -> Result<LogStream, RuntimeError> {
        Err(RuntimeError::NotSupported)
    }
}
