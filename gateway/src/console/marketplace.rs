//! The marketplace of one platform (`/ui/marketplace?platform=&q=`): every service and plan of the
//! merged catalog and the logical offerings, with what the platform gets.
//!
//! - **visible**: the policy shows the plan; a provision without parameters or context would be
//!   placed on the broker named, or refused with the reason given (a deny or parameter rule);
//! - **hidden**: the catalog the platform is served leaves the plan out; the reason is what
//!   `explain` (`POST /admin/explain`) answers for a provision of it, by construction: the page
//!   runs the same [`explain`] for every plan.
//!
//! `q` keeps the services whose name, description or tags contain it (case-insensitive).

use actix_web::{HttpRequest, web};
use askama::Template;
use osb_policies::PlanFacts;
use osb_routing::catalog::Service;
use serde::Deserialize;
use serde_json::json;

use super::{Html, PageError, Shell, Viewer};
use crate::ops::admin::inventory::query;
use crate::ops::explain::{ExplainRequest, explain};
use crate::osb::decide::Decider;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketQuery {
    platform: Option<String>,
    q: Option<String>,
}

/// One plan as the platform gets it.
#[derive(Debug)]
pub struct PlanRow {
    pub name: String,
    pub id: String,
    pub free: bool,
    /// `visible`, `denied` (visible, but a plain provision is refused) or `hidden`.
    pub access: &'static str,
    /// The broker a plain provision lands on (visible and allowed).
    pub placed_on: Option<String>,
    /// What `explain` answers for a plain provision when refused: status and description.
    pub refusal: Option<String>,
    /// The visibility rule that decided (`None`: the policy's default).
    pub rule: Option<String>,
}

/// One service and its plans.
#[derive(Debug)]
pub struct ServiceRow {
    pub name: String,
    pub id: String,
    pub description: String,
    pub broker: String,
    pub tags: Vec<String>,
    pub plans: Vec<PlanRow>,
    pub visible: usize,
}

#[derive(Template)]
#[template(path = "console/marketplace.html")]
struct MarketplacePage {
    shell: Shell,
    platforms: Vec<String>,
    platform: String,
    q: String,
    services: Vec<ServiceRow>,
    visible: usize,
    hidden: usize,
    denied: usize,
}

/// `GET /ui/marketplace`
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<Html, PageError> {
    let viewer = Viewer::of(&req, &state)?;
    let q: MarketQuery = query(&req)?;
    let platforms: Vec<String> = state.platforms.current().iter().map(|p| p.name.clone()).collect();
    let platform = q
        .platform
        .filter(|p| !p.is_empty())
        .or_else(|| platforms.first().cloned())
        .unwrap_or_default();
    let search = q.q.unwrap_or_default().trim().to_lowercase();
    let services = state.with_decider(|decider| {
        let mut rows = Vec::new();
        for (broker, service) in decider
            .snapshot
            .catalog
            .services
            .iter()
            .map(|s| {
                (
                    decider.snapshot.routes.service(&s.id).map_or("", |r| &*r.broker),
                    s,
                )
            })
            .chain(decider.policy.offerings.iter().map(|o| ("gateway", o)))
        {
            if matches(service, &search) {
                rows.push(service_row(decider, &platform, broker, service));
            }
        }
        rows
    });
    let plans = || services.iter().flat_map(|s| s.plans.iter());
    let count = |access: &str| plans().filter(|p| p.access == access).count();
    let page = MarketplacePage {
        shell: Shell::new(&viewer, "marketplace", format!("Marketplace of {platform}")),
        visible: count("visible"),
        hidden: count("hidden"),
        denied: count("denied"),
        platforms,
        platform,
        q: search,
        services,
    };
    Html::of(&page)
}

/// Whether `service` matches the search (empty: everything).
fn matches(service: &Service, search: &str) -> bool {
    search.is_empty()
        || service.name.to_lowercase().contains(search)
        || service.description.to_lowercase().contains(search)
        || service.tags().iter().any(|t| t.to_lowercase().contains(search))
}

fn service_row(decider: &Decider<'_>, platform: &str, broker: &str, service: &Service) -> ServiceRow {
    let tags = service.tags();
    let plans: Vec<PlanRow> = service
        .plans
        .iter()
        .map(|plan| {
            let facts = PlanFacts {
                broker,
                service: &service.name,
                plan: &plan.name,
                tags: &tags,
                free: plan.free(),
            };
            let visibility = decider.policy.policy.visibility(platform, &facts);
            let report = explain(decider, &plain_provision(platform, &service.id, &plan.id), None);
            let refusal = report.refusal.as_ref().map(|r| {
                format!(
                    "{} {}",
                    r.get("status").and_then(serde_json::Value::as_u64).unwrap_or(0),
                    r.get("description")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                )
            });
            PlanRow {
                name: plan.name.clone(),
                id: plan.id.clone(),
                free: plan.free(),
                access: match (visibility.visible, report.allowed) {
                    (false, _) => "hidden",
                    (true, false) => "denied",
                    (true, true) => "visible",
                },
                placed_on: report.decision.map(|d| d.broker),
                refusal,
                rule: visibility.rule,
            }
        })
        .collect();
    ServiceRow {
        name: service.name.clone(),
        id: service.id.clone(),
        description: service.description.clone(),
        broker: broker.to_owned(),
        visible: plans.iter().filter(|p| p.access != "hidden").count(),
        tags,
        plans,
    }
}

/// The explain request of a provision of `service_id`/`plan_id` with no parameters or context:
/// what the marketplace reports for each plan (`POST /admin/explain` with the same body answers
/// the same).
pub fn plain_provision(platform: &str, service_id: &str, plan_id: &str) -> ExplainRequest {
    ExplainRequest {
        platform: platform.to_owned(),
        operation: "provision".to_owned(),
        instance_id: None,
        body: Some(json!({"service_id": service_id, "plan_id": plan_id})),
        plan_id: None,
    }
}
