//! Rate limits (governor): inbound per platform (catalog reads and other calls apart), outbound per
//! upstream broker (protects the clouds' API quotas).
//!
//! The limits come from the policy file, so they follow its reloads: a limiter is kept while its
//! quota is unchanged (its state survives a reload) and rebuilt when it changes. Limiters exist only
//! for configured platforms and brokers, so the state stays bounded. A refusal is decided before
//! anything is forwarded: 429 with `Retry-After` (governor's wait, rounded up) and an OSB body.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use osb_config::Settings;
use osb_policies::{Limits, Rate};

use crate::error::ApiError;

/// Which quota a platform call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Catalog,
    Calls,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Catalog => "catalog",
            Class::Calls => "calls",
        }
    }
}

struct Limiter {
    rate: Rate,
    limiter: DefaultDirectRateLimiter,
}

#[derive(Default)]
struct Set {
    generation: u64,
    platforms: HashMap<(String, Class), Arc<Limiter>>,
    brokers: HashMap<String, Arc<Limiter>>,
}

/// The limiters of the configured platforms and brokers.
pub struct Limiters {
    clock: DefaultClock,
    inner: Mutex<Inner>,
}

/// The names limiters are kept for, and the limiters of the policy generation last asked for.
struct Inner {
    platforms: Vec<String>,
    brokers: Vec<String>,
    set: Arc<Set>,
    /// The names changed: rebuild at the next call whatever the generation.
    stale: bool,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

fn quota(rate: Rate) -> Option<Quota> {
    let per_sec = NonZeroU32::new(rate.per_sec)?;
    let burst = NonZeroU32::new(rate.burst.max(1))?;
    Some(Quota::per_second(per_sec).allow_burst(burst))
}

fn build(rate: Rate, old: Option<&Arc<Limiter>>) -> Option<Arc<Limiter>> {
    if let Some(old) = old.filter(|o| o.rate == rate) {
        return Some(old.clone());
    }
    quota(rate).map(|q| {
        Arc::new(Limiter {
            rate,
            limiter: RateLimiter::direct(q),
        })
    })
}

impl Limiters {
    pub fn new(settings: &Settings) -> Self {
        Limiters {
            clock: DefaultClock::default(),
            inner: Mutex::new(Inner {
                platforms: settings.platforms.iter().map(|p| p.name.clone()).collect(),
                brokers: settings.brokers.iter().map(|b| b.name.clone()).collect(),
                set: Arc::new(Set::default()),
                stale: true,
            }),
        }
    }

    /// Keeps limiters for these platforms and brokers from now on (a configuration reload);
    /// those whose quota is unchanged keep their state.
    pub fn set_names(&self, platforms: Vec<String>, brokers: Vec<String>) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.platforms = platforms;
        inner.brokers = brokers;
        inner.stale = true;
    }

    /// The limiters for policy generation `generation` (rebuilt from `limits` on a change).
    fn current(&self, generation: u64, limits: &Limits) -> Arc<Set> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.set.generation == generation && !inner.stale {
            return inner.set.clone();
        }
        let guard = &inner.set;
        let mut next = Set {
            generation,
            ..Set::default()
        };
        for platform in &inner.platforms {
            let limit = limits.platform(platform);
            for (class, rate) in [(Class::Catalog, limit.catalog), (Class::Calls, limit.calls)] {
                let key = (platform.clone(), class);
                if let Some(limiter) = rate.and_then(|r| build(r, guard.platforms.get(&key))) {
                    next.platforms.insert(key, limiter);
                }
            }
        }
        for broker in &inner.brokers {
            if let Some(limiter) = limits
                .broker(broker)
                .and_then(|r| build(r, guard.brokers.get(broker)))
            {
                next.brokers.insert(broker.clone(), limiter);
            }
        }
        inner.set = Arc::new(next);
        inner.stale = false;
        inner.set.clone()
    }

    fn check(
        &self,
        limiter: Option<&Arc<Limiter>>,
        message: impl FnOnce() -> String,
    ) -> Result<(), ApiError> {
        let Some(limiter) = limiter else { return Ok(()) };
        limiter.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::RateLimited {
                description: message(),
                retry_after_secs: retry_after_secs.max(1),
            }
        })
    }

    /// Draws one call of `class` from `platform`'s quota.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] when the quota is spent.
    pub fn check_platform(
        &self,
        generation: u64,
        limits: &Limits,
        platform: &str,
        class: Class,
    ) -> Result<(), ApiError> {
        let set = self.current(generation, limits);
        self.check(set.platforms.get(&(platform.to_owned(), class)), || {
            format!("platform {platform} is over its {} rate limit", class.as_str())
        })
    }

    /// Draws one call from `broker`'s outbound quota.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] when the quota is spent.
    pub fn check_broker(&self, generation: u64, limits: &Limits, broker: &str) -> Result<(), ApiError> {
        let set = self.current(generation, limits);
        self.check(set.brokers.get(broker), || {
            format!("broker {broker} is over its rate limit; nothing was sent")
        })
    }
}
