//! The admin API (tokens with `parley_role: "admin"`; the router checks the role): reports
//! with their snapshots, moderators' actions on users, the moderation log. And `GET
//! /api/standing`, where every user reads their own standing.

use hyper::StatusCode;
use parley_types::{
    ModAction, ModerationEntry, Report, ReportFilter, Standing, Visibility, time_ordered_id,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{invalid, message_json, parse};
use super::{Call, Reply};
use crate::clock::rfc3339;
use crate::errors::ClientError;
use crate::transport::response::json as json_response;

/// Longest mute: a year.
const MAX_MUTE_SECS: u64 = 365 * 24 * 3600;
/// Default page of reports and log entries.
const PAGE_DEFAULT: usize = 50;

fn ok(v: Value) -> Reply {
    Ok(json_response(StatusCode::OK, v.to_string()))
}

fn no_such_report() -> ClientError {
    ClientError::new(parley_proto::ErrorCode::NotFound, "no such report")
}

/// `GET /api/standing`: the caller's own standing.
pub(super) async fn own_standing(c: Call<'_>) -> Reply {
    let s = c.node.chat.standings.of(&c.user).await?;
    ok(standing_json(&c.user, &s, c.now.wall_ms))
}

pub(super) async fn reports(c: Call<'_>) -> Reply {
    let open_only = match c.query.get("status") {
        None | Some("open") => true,
        Some("all") => false,
        Some(_) => return Err(invalid("status must be open or all")),
    };
    let reported_user = c.query.get("userId").map(str::to_owned);
    if let Some(u) = &reported_user {
        crate::auth::validate_user_id(u).map_err(invalid)?;
    }
    let before = before(&c, "a report id")?;
    let limit = c.query.limit(PAGE_DEFAULT)?;
    let filter = ReportFilter {
        open_only,
        reported_user,
    };
    let page = c
        .node
        .chat
        .storage()
        .reports(&filter, before, limit)
        .await?;
    let next = (page.len() == limit).then(|| page.last().map(|r| r.id.to_string()));
    ok(json!({
        "reports": page.iter().map(report_json).collect::<Vec<_>>(),
        "nextBefore": next.flatten(),
    }))
}

pub(super) async fn report(c: Call<'_>, id: uuid::Uuid) -> Reply {
    let r = c.node.chat.storage().report_by_id(id).await?;
    ok(report_json(&r.ok_or_else(no_such_report)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ActionBody {
    action: String,
    #[serde(default)]
    duration_secs: Option<u64>,
    #[serde(default)]
    note: String,
}

impl ActionBody {
    /// The action, at `now_ms` (a mute ends `durationSecs` later).
    fn action(&self, now_ms: i64) -> Result<ModAction, ClientError> {
        let action = match self.action.as_str() {
            "dismiss" => ModAction::Dismiss,
            "release" => {
                return Err(invalid(
                    "release sends a held message: use /api/admin/reports/:id/release",
                ));
            }
            "warn" => ModAction::Warn,
            "mute" => {
                let secs = self
                    .duration_secs
                    .filter(|s| (1..=MAX_MUTE_SECS).contains(s))
                    .ok_or_else(|| invalid("mute needs durationSecs, 1 to 31536000"))?;
                return Ok(ModAction::Mute {
                    until_ms: now_ms + (secs as i64) * 1000,
                });
            }
            "unmute" => ModAction::Unmute,
            "ban" => ModAction::Ban,
            "unban" => ModAction::Unban,
            "shadow" => ModAction::Shadow,
            "unshadow" => ModAction::Unshadow,
            _ => {
                return Err(invalid(
                    "action must be dismiss, warn, mute, unmute, ban, unban, shadow or unshadow",
                ));
            }
        };
        if self.duration_secs.is_some() {
            return Err(invalid("durationSecs is for mute only"));
        }
        Ok(action)
    }
}

/// `POST /api/admin/reports/:id/resolve`: closes the report with an action on its reported
/// user.
pub(super) async fn resolve(c: Call<'_>, id: uuid::Uuid) -> Reply {
    let (node, moderator, now) = (c.node, c.user.clone(), c.now);
    let report = node.chat.storage().report_by_id(id).await?;
    let report = report.ok_or_else(no_such_report)?;
    let body: ActionBody = parse(c.json().await?)?;
    let entry = entry(
        &body,
        &moderator,
        &report.reported_user,
        Some(id),
        now.wall_ms,
    )?;
    let standing = node.chat.moderate(entry, now).await?;
    ok(standing_json(&report.reported_user, &standing, now.wall_ms))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReleaseBody {
    #[serde(default)]
    note: String,
}

/// `POST /api/admin/reports/:id/release`: sends a held message (once) and closes its report.
pub(super) async fn release(c: Call<'_>, id: uuid::Uuid) -> Reply {
    let (node, moderator, now) = (c.node, c.user.clone(), c.now);
    let report = node.chat.storage().report_by_id(id).await?;
    let report = report.ok_or_else(no_such_report)?;
    let body: ReleaseBody = parse(c.json().await?)?;
    if body.note.chars().count() > parley_types::MAX_MODERATION_NOTE_CHARS {
        return Err(invalid("note is at most 2000 characters"));
    }
    let entry = ModerationEntry {
        id: time_ordered_id(now.wall_ms),
        at_ms: now.wall_ms,
        moderator: moderator.to_string(),
        target: report.reported_user.clone(),
        action: ModAction::Release,
        report: Some(id),
        note: body.note,
    };
    let appended = node.chat.release(&report, entry, now).await?;
    ok(json!({ "message": message_json(&appended.message) }))
}

/// `POST /api/admin/users/:id/actions`: an action without a report.
pub(super) async fn act(c: Call<'_>, target: &str) -> Reply {
    crate::auth::validate_user_id(target).map_err(invalid)?;
    let (node, moderator, now) = (c.node, c.user.clone(), c.now);
    let body: ActionBody = parse(c.json().await?)?;
    if body.action == "dismiss" {
        return Err(invalid(
            "dismiss closes a report: use /api/admin/reports/:id/resolve",
        ));
    }
    if target == &*moderator {
        return Err(invalid("a moderator cannot act on themselves"));
    }
    let entry = entry(&body, &moderator, target, None, now.wall_ms)?;
    let standing = node.chat.moderate(entry, now).await?;
    ok(standing_json(target, &standing, now.wall_ms))
}

fn entry(
    body: &ActionBody,
    moderator: &str,
    target: &str,
    report: Option<uuid::Uuid>,
    now_ms: i64,
) -> Result<ModerationEntry, ClientError> {
    if body.note.chars().count() > parley_types::MAX_MODERATION_NOTE_CHARS {
        return Err(invalid("note is at most 2000 characters"));
    }
    Ok(ModerationEntry {
        id: time_ordered_id(now_ms),
        at_ms: now_ms,
        moderator: moderator.to_owned(),
        target: target.to_owned(),
        action: body.action(now_ms)?,
        report,
        note: body.note.clone(),
    })
}

pub(super) async fn standing(c: Call<'_>, user: &str) -> Reply {
    crate::auth::validate_user_id(user).map_err(invalid)?;
    let s = c.node.chat.storage().standing(user).await?;
    ok(standing_json(user, &s, c.now.wall_ms))
}

pub(super) async fn log(c: Call<'_>) -> Reply {
    let target = c.query.get("userId");
    if let Some(u) = target {
        crate::auth::validate_user_id(u).map_err(invalid)?;
    }
    let before = before(&c, "a log entry id")?;
    let limit = c.query.limit(PAGE_DEFAULT)?;
    let page = c
        .node
        .chat
        .storage()
        .moderation_log(target, before, limit)
        .await?;
    let next = (page.len() == limit).then(|| page.last().map(|e| e.id.to_string()));
    let entries: Vec<Value> = page
        .iter()
        .map(|e| {
            json!({
                "id": e.id.to_string(),
                "at": rfc3339(e.at_ms),
                "moderatorId": e.moderator,
                "userId": e.target,
                "action": e.action.as_str(),
                "mutedUntil": mute_end(e.action),
                "reportId": e.report.map(|r| r.to_string()),
                "note": e.note,
            })
        })
        .collect();
    ok(json!({ "entries": entries, "nextBefore": next.flatten() }))
}

/// `?before=`: the id a page starts below (`what` names it in the error).
fn before(c: &Call<'_>, what: &str) -> Result<Option<uuid::Uuid>, ClientError> {
    c.query
        .get("before")
        .map(|b| b.parse::<uuid::Uuid>())
        .transpose()
        .map_err(|_| invalid(format!("before must be {what}")))
}

fn mute_end(action: ModAction) -> Option<String> {
    match action {
        ModAction::Mute { until_ms } => Some(rfc3339(until_ms)),
        _ => None,
    }
}

fn standing_json(user: &str, s: &Standing, now_ms: i64) -> Value {
    json!({
        "userId": user,
        "banned": s.banned,
        "shadowed": s.shadowed,
        "mutedUntil": (s.muted_until_ms > now_ms).then(|| rfc3339(s.muted_until_ms)),
        "warnings": s.warnings,
        "updatedAt": (s.updated_at_ms > 0).then(|| rfc3339(s.updated_at_ms)),
    })
}

fn report_json(r: &Report) -> Value {
    let messages: Vec<Value> = r
        .snapshot
        .messages
        .iter()
        .map(|m| {
            let mut v = message_json(m);
            v["shadowed"] = json!(m.visibility == Visibility::Sender);
            v
        })
        .collect();
    json!({
        "id": r.id.to_string(),
        "reporterId": r.reporter,
        "reportedUserId": r.reported_user,
        "conversationId": r.conversation.map(|c| c.to_string()),
        "messageId": r.message.map(|m| m.0.to_string()),
        "reason": r.reason,
        "createdAt": rfc3339(r.created_at_ms),
        "status": if r.resolution.is_some() { "resolved" } else { "open" },
        "heldMessage": r.held.as_ref().map(|h| json!({
            "type": h.kind.as_str(),
            "content": h.content,
            "clientMsgId": h.client_msg_id,
            "createdAt": rfc3339(h.created_at_ms),
        })),
        "snapshot": {
            "participantIds": r.snapshot.participants,
            "participantCount": r.snapshot.participant_count,
            "messages": messages,
        },
        "resolution": r.resolution.as_ref().map(|res| json!({
            "action": res.action.as_str(),
            "mutedUntil": mute_end(res.action),
            "moderatorId": res.moderator,
            "note": res.note,
            "at": rfc3339(res.at_ms),
            "logEntryId": res.audit_id.to_string(),
        })),
    })
}
