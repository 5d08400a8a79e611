//! The listeners' TLS (`tls`, `admin.tls`) and the admin API's named users (`admin.users`).

use super::*;

/// `tls` / `admin.tls`: certificate and key (read and checked now; the gateway reads them again
/// when they change), and the optional client CA.
pub(super) fn listener_tls(c: &mut Checker<'_>, key: &str, tls: &RawListenerTls) -> Option<ListenerTls> {
    let base_dir = c.context.base_dir.clone();
    let mut file = |field: &str, given: Option<&String>, reader: fn(&Path) -> Result<String, String>| {
        let Some(given) = given else {
            c.problem(format!("{key}.{field}"), "is required");
            return None;
        };
        let path = resolve(&base_dir, given);
        match reader(&path) {
            Ok(_) => Some(path),
            Err(message) => {
                c.problem(format!("{key}.{field}"), message);
                None
            }
        }
    };
    let cert_file = file("cert_file", tls.cert_file.as_ref(), crate::tls::read_certificates);
    let key_file = file("key_file", tls.key_file.as_ref(), crate::tls::read_private_key);
    let client_ca_file = match tls.client_ca_file.as_ref() {
        Some(given) => Some(file(
            "client_ca_file",
            Some(given),
            crate::tls::read_certificates,
        )?),
        None => None,
    };
    Some(ListenerTls {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file,
    })
}

/// `admin.users`: each named, with a password and a role; no name twice (with `admin.username`).
pub(super) fn admin_users(
    c: &mut Checker<'_>,
    admin: &RawAdmin,
    legacy: Option<&BasicCredentials>,
) -> Vec<AdminUser> {
    let mut seen: HashSet<String> = legacy.map(|l| l.username.clone()).into_iter().collect();
    let mut users = Vec::new();
    for (i, user) in admin.users.iter().enumerate() {
        let key = format!("admin.users[{i}]");
        let Some(name) = user.name.as_deref().filter(|n| !n.is_empty()) else {
            c.problem(format!("{key}.name"), "is required");
            continue;
        };
        basic_username(c, &format!("{key}.name"), name);
        if !seen.insert(name.to_owned()) {
            c.problem(
                format!("{key}.name"),
                format!("{name:?} is already an admin user"),
            );
        }
        let role = match user.role.as_deref().unwrap_or("viewer") {
            "viewer" => AdminRole::Viewer,
            "operator" => AdminRole::Operator,
            other => {
                c.problem(
                    format!("{key}.role"),
                    format!("expected viewer or operator, got {other:?}"),
                );
                continue;
            }
        };
        match c.secret(&key, user.password_keys()) {
            Given::Secret(password) => users.push(AdminUser {
                name: name.to_owned(),
                password,
                role,
            }),
            Given::Absent => c.problem(
                format!("{key}.password"),
                "is required (password, password_env or password_file)",
            ),
            Given::Broken => {}
        }
    }
    users
}
