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
        let s = &self.st.safety;
        if blocked {
            tokio::try_join!(
                self.exec(&s.block_insert, (user, target, now_ms)),
                self.exec(&s.blocked_by_insert, (target, user, now_ms)),
            )?;
        } else {
            tokio::try_join!(
                self.exec(&s.block_delete, (user, target)),
                self.exec(&s.blocked_by_delete, (target, user)),
            )?;
        }
        Ok(())
    }
    pub(super) async fn blocks(&self, user: &str) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, Option<i64>)> =
            self.rows(&self.st.safety.block_list, (user,)).await?;
        Ok(rows
            .into_iter()
            .map(|(u, at)| (u, at.unwrap_or(0)))
            .collect())
    }
    pub(super) async fn block_relations(&self, user: &str) -> Result<Vec<String>> {
        let (mine, theirs) = tokio::try_join!(
            self.rows::<(String,)>(&self.st.safety.block_list_users, (user,)),
            self.rows::<(String,)>(&self.st.safety.blocked_by_list, (user,)),
        )?;
        let set: std::collections::BTreeSet<String> =
            mine.into_iter().chain(theirs).map(|(u,)| u).collect();
        Ok(set.into_iter().collect())
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
