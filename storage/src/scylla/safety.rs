//! Blocks and reports.

use parley_types::*;
use uuid::Uuid;

use super::Scylla;
use crate::error::Result;

impl Scylla {
    pub(super) async fn blocked_between(&self, a: &str, b: &str) -> Result<bool> {
        let (x, y) = tokio::try_join!(
            self.rows::<(String,)>(&self.st.safety.block_get, (a, b)),
            self.rows::<(String,)>(&self.st.safety.block_get, (b, a))
        )?;
        Ok(!x.is_empty() || !y.is_empty())
    }
    pub(super) async fn set_block(
        &self,
        user: &str,
        target: &str,
        blocked: bool,
        now_ms: i64,
    ) -> Result<()> {
        if blocked {
            self.exec(&self.st.safety.block_insert, (user, target, now_ms))
                .await
        } else {
            self.exec(&self.st.safety.block_delete, (user, target))
                .await
        }
    }
    pub(super) async fn report(&self, report: NewReport) -> Result<Uuid> {
        let id = Uuid::new_v4();
        self.exec(
            &self.st.safety.report_insert,
            (
                id,
                report.reporter,
                report.reported_user,
                report.conversation.map(|c| c.0),
                report.message.map(|m| m.0 as i64),
                report.reason,
                report.now_ms,
            ),
        )
        .await?;
        Ok(id)
    }
}
