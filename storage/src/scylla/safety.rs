//! Blocks and reports.

use parley_types::*;
use uuid::Uuid;

use super::Scylla;
use crate::error::{Result, StorageError};
use crate::record::{
    decode_entry, decode_report, decode_standing, encode_entry, encode_report, encode_standing,
};

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
    pub(super) async fn put_value(
        &self,
        owner: &str,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<()> {
        let s = &self.st.safety;
        match value {
            Some(v) => self.exec(&s.value_put, (owner, key, v)).await,
            None => self.exec(&s.value_delete, (owner, key)).await,
        }
    }
    /// Keys with a prefix are one run of the clustering order starting at the prefix.
    pub(super) async fn values(
        &self,
        owner: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let limit = i32::try_from(limit.min(crate::MAX_PAGE)).unwrap_or(i32::MAX);
        let rows: Vec<(String, Option<Vec<u8>>)> = self
            .rows(&self.st.safety.value_from, (owner, prefix, limit))
            .await?;
        Ok(rows
            .into_iter()
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
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
        let id = time_ordered_id(report.now_ms);
        let report = report.into_report(id);
        self.put_new_report(&report).await?;
        Ok(id)
    }

    /// Stores a new report and lists it (all, open, against its user). A report with this id
    /// already stored is left as it is (and not listed as open again).
    pub(super) async fn put_new_report(&self, report: &Report) -> Result<()> {
        let s = &self.st.safety;
        let id = report.id.as_bytes().as_slice();
        let stored = self.lwt(&s.report_put, (id, encode_report(report))).await?;
        let against = format!("against:{}", report.reported_user);
        let mut lists = vec![REPORTS, against.as_str()];
        if stored.applied() && report.resolution.is_none() {
            lists.push(OPEN);
        }
        for list in lists {
            self.list_put(list, &report.id, None).await?;
        }
        Ok(())
    }

    async fn list_put(&self, list: &str, id: &Uuid, record: Option<Vec<u8>>) -> Result<()> {
        let s = &self.st.safety;
        let bucket = bucket_of(id);
        tokio::try_join!(
            self.exec(&s.bucket_insert, (list, bucket)),
            self.exec(
                &s.list_insert,
                (list, bucket, id.as_bytes().as_slice(), record)
            ),
        )?;
        Ok(())
    }

    /// Up to `limit` entries of `list`, newest first, older than `before`.
    async fn list_page(
        &self,
        list: &str,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<(Uuid, Option<Vec<u8>>)>> {
        let s = &self.st.safety;
        let top = before.as_ref().map_or(i32::MAX, bucket_of);
        let buckets: Vec<(i32,)> = self.rows(&s.buckets, (list, top)).await?;
        let below: Vec<u8> = match &before {
            Some(id) => id.as_bytes().to_vec(),
            None => vec![0xff; 17],
        };
        let mut out = Vec::with_capacity(limit);
        for (bucket,) in buckets {
            let want = (limit - out.len()) as i32;
            let rows: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
                .rows(&s.list_page, (list, bucket, below.as_slice(), want))
                .await?;
            for (id, record) in rows {
                let id = Uuid::from_slice(&id)
                    .map_err(|_| StorageError::Corrupt("moderation list id".into()))?;
                out.push((id, record));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The report and its stored bytes (for compare-and-set).
    async fn report_row(&self, id: Uuid) -> Result<Option<(Report, Vec<u8>)>> {
        let rows: Vec<(Option<Vec<u8>>,)> = self
            .rows(&self.st.safety.report_get, (id.as_bytes().as_slice(),))
            .await?;
        match rows.into_iter().next().and_then(|(r,)| r) {
            Some(bytes) => Ok(Some((decode_report(&bytes)?, bytes))),
            None => Ok(None),
        }
    }

    pub(super) async fn report_by_id(&self, id: Uuid) -> Result<Option<Report>> {
        Ok(self.report_row(id).await?.map(|(r, _)| r))
    }

    pub(super) async fn reports(
        &self,
        filter: &ReportFilter,
        mut before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Report>> {
        let limit = limit.clamp(1, MAX_PAGE);
        let list = match (&filter.reported_user, filter.open_only) {
            (Some(u), _) => format!("against:{u}"),
            (None, true) => OPEN.to_owned(),
            (None, false) => REPORTS.to_owned(),
        };
        let mut out = Vec::with_capacity(limit);
        loop {
            let page = self.list_page(&list, before, limit).await?;
            let exhausted = page.len() < limit;
            before = page.last().map(|(id, _)| *id);
            let ids: Vec<Uuid> = page.into_iter().map(|(id, _)| id).collect();
            let reports =
                super::futures_join_all(ids.into_iter().map(|id| self.report_by_id(id)).collect())
                    .await?;
            for r in reports.into_iter().flatten() {
                if crate::rules::report_matches(&r, filter) && out.len() < limit {
                    out.push(r);
                }
            }
            if exhausted || out.len() >= limit {
                return Ok(out);
            }
        }
    }

    pub(super) async fn standing(&self, user: &str) -> Result<Standing> {
        Ok(self.standing_row(user).await?.0)
    }

    async fn standing_row(&self, user: &str) -> Result<(Standing, Option<Vec<u8>>)> {
        let rows: Vec<(Option<Vec<u8>>,)> =
            self.rows(&self.st.safety.standing_get, (user,)).await?;
        match rows.into_iter().next().and_then(|(r,)| r) {
            Some(bytes) => Ok((decode_standing(&bytes)?, Some(bytes))),
            None => Ok((Standing::default(), None)),
        }
    }

    /// Not one transaction: the report is resolved first (compare-and-set: one moderator
    /// wins), then the standing (compare-and-set, retried), then the log entry.
    pub(super) async fn moderate(&self, e: ModerationEntry) -> Result<Standing> {
        let s = &self.st.safety;
        if let Some(id) = e.report {
            let mut tries = 0;
            loop {
                let (mut report, old) = self.report_row(id).await?.ok_or(StorageError::NotFound)?;
                crate::rules::resolve(&mut report, &e)?;
                let new = encode_report(&report);
                if self
                    .lwt(&s.report_cas, (new, id.as_bytes().as_slice(), old))
                    .await?
                    .applied()
                {
                    break;
                }
                tries += 1;
                if tries == CAS_TRIES {
                    return Err(StorageError::Unavailable("report kept changing".into()));
                }
            }
            let open = (OPEN, bucket_of(&id), id.as_bytes().as_slice());
            self.exec(&s.list_delete, open).await?;
        }
        let mut tries = 0;
        let after = loop {
            let (before, old) = self.standing_row(&e.target).await?;
            let after = before.after(e.action, e.at_ms);
            if after == before {
                break after;
            }
            let new = encode_standing(&after);
            let done = match old {
                None => self.lwt(&s.standing_insert, (&e.target, new)).await?,
                Some(old) => self.lwt(&s.standing_cas, (new, &e.target, old)).await?,
            };
            if done.applied() {
                break after;
            }
            tries += 1;
            if tries == CAS_TRIES {
                return Err(StorageError::Unavailable("standing kept changing".into()));
            }
        };
        let record = encode_entry(&e);
        let by_target = format!("log:{}", e.target);
        tokio::try_join!(
            self.list_put(LOG, &e.id, Some(record.clone())),
            self.list_put(&by_target, &e.id, Some(record)),
        )?;
        Ok(after)
    }

    pub(super) async fn moderation_log(
        &self,
        target: Option<&str>,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<ModerationEntry>> {
        let list = match target {
            Some(t) => format!("log:{t}"),
            None => LOG.to_owned(),
        };
        let page = self
            .list_page(&list, before, limit.clamp(1, MAX_PAGE))
            .await?;
        page.into_iter()
            .filter_map(|(_, record)| record)
            .map(|r| decode_entry(&r))
            .collect()
    }
}

/// Lists of `moderation_lists`.
const REPORTS: &str = "reports";
const OPEN: &str = "open";
const LOG: &str = "log";
/// Compare-and-set attempts before giving up (moderators are few: contention is rare).
const CAS_TRIES: usize = 8;

/// The 30-day bucket of a time-ordered id.
fn bucket_of(id: &Uuid) -> i32 {
    (id_time_ms(id) / (30 * 86_400_000)) as i32
}
