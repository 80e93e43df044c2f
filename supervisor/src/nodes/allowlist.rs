//! Which node commands the gateway allows, per platform (the reference's defaults).
//! Invariant: a command runs only if the node declared it, this list permits it for the
//! node's platform, and (v4) an operator approved it.

const CANVAS: &[&str] = &[
    "canvas.present",
    "canvas.hide",
    "canvas.navigate",
    "canvas.eval",
    "canvas.snapshot",
    "canvas.a2ui.push",
    "canvas.a2ui.pushJSONL",
    "canvas.a2ui.reset",
];
const CAMERA: &[&str] = &["camera.list", "camera.snap", "camera.clip"];
const SCREEN: &[&str] = &["screen.record"];
const LOCATION: &[&str] = &["location.get"];
const SMS: &[&str] = &["sms.send"];
const SYSTEM: &[&str] = &[
    "system.run",
    "system.which",
    "system.notify",
    "system.execApprovals.get",
    "system.execApprovals.set",
    "browser.proxy",
];

/// The platform family a node's `client.platform` / `deviceFamily` names.
pub fn platform_id(platform: &str, family: Option<&str>) -> &'static str {
    let p = platform.trim().to_lowercase();
    let f = family.unwrap_or("").trim().to_lowercase();
    if p.starts_with("ios") || f.contains("iphone") || f.contains("ipad") || f.contains("ios") {
        "ios"
    } else if p.starts_with("android") || f.contains("android") {
        "android"
    } else if p.starts_with("mac") || p.starts_with("darwin") || f.contains("mac") {
        "macos"
    } else if p.starts_with("win") || f.contains("windows") {
        "windows"
    } else if p.starts_with("linux") || f.contains("linux") {
        "linux"
    } else {
        "unknown"
    }
}

/// The commands the gateway allows for a platform (the reference's defaults).
pub fn allowlist(platform: &str) -> Vec<&'static str> {
    let groups: &[&[&str]] = match platform {
        "ios" => &[CANVAS, CAMERA, SCREEN, LOCATION],
        "android" => &[CANVAS, CAMERA, SCREEN, LOCATION, SMS],
        "macos" => &[CANVAS, CAMERA, SCREEN, LOCATION, SYSTEM],
        "linux" | "windows" => &[SYSTEM],
        _ => &[CANVAS, CAMERA, SCREEN, LOCATION, SMS, SYSTEM],
    };
    groups.iter().flat_map(|g| g.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_map_to_the_reference_allow_lists() {
        assert_eq!(platform_id("iOS 18", None), "ios");
        assert_eq!(platform_id("darwin", None), "macos");
        assert_eq!(platform_id("x", Some("Android phone")), "android");
        assert!(allowlist("linux").contains(&"system.run"));
        assert!(!allowlist("linux").contains(&"camera.snap"));
        assert!(allowlist("ios").contains(&"camera.snap"));
        assert!(!allowlist("ios").contains(&"system.run"));
    }
}
