// Switchboard's A2UI v0.8 renderer: the host page a node's canvas panel loads at
// /__openclaw__/a2ui/ (v4) or /__clawdbot__/a2ui/ (v3).
//
// A node implements `canvas.a2ui.push` / `canvas.a2ui.reset` by calling, in this page,
// `applyMessages(messages)` / `reset()` on `globalThis.clawdbotA2UI` (the name the v3
// apps call) or `globalThis.openclawA2UI`; a page may also carry
// `globalThis.openclawA2UIBoot = {messages}` to render at load.
//
// Messages (A2UI v0.8): `surfaceUpdate {surfaceId, components: [{id, component: {Type:
// props}}]}`, `dataModelUpdate {surfaceId, path?, contents: [{key, valueString |
// valueNumber | valueBoolean | valueMap}]}`, `beginRendering {surfaceId, root}`,
// `deleteSurface {surfaceId}`. Values are `{literalString | literalNumber |
// literalBoolean}` or `{path}` into the surface's data model.
//
// Everything is built with DOM calls and text nodes: no message can inject markup or
// script. A user action (a Button) goes to the native bridge the apps listen on.
(function () {
  "use strict";
  var MAX_COMPONENTS = 5000;
  var MAX_DEPTH = 64;
  var surfaces = new Map(); // id -> {components: Map, data: {}, root: string|null, el}

  function host() {
    return (
      document.querySelector("openclaw-a2ui-host, clawdbot-a2ui-host, #a2ui-root") ||
      document.body
    );
  }

  function surface(id) {
    id = typeof id === "string" && id ? id : "main";
    var s = surfaces.get(id);
    if (!s) {
      s = { id: id, components: new Map(), data: {}, root: null, el: null };
      surfaces.set(id, s);
    }
    return s;
  }

  function lookup(data, path) {
    if (typeof path !== "string") return undefined;
    var parts = path.split("/").filter(Boolean);
    var at = data;
    for (var i = 0; i < parts.length; i++) {
      if (at === null || typeof at !== "object") return undefined;
      at = at[parts[i]];
    }
    return at;
  }

  function value(s, v, scope) {
    if (v === null || typeof v !== "object") return v;
    if ("literalString" in v) return v.literalString;
    if ("literalNumber" in v) return v.literalNumber;
    if ("literalBoolean" in v) return v.literalBoolean;
    if ("path" in v) {
      var p = String(v.path);
      if (scope !== undefined && !p.startsWith("/")) return lookup(scope, p);
      return lookup(s.data, p);
    }
    return undefined;
  }

  function text(s, v, scope) {
    var x = value(s, v, scope);
    return x === undefined || x === null ? "" : String(x);
  }

  function entryValue(e) {
    if ("valueString" in e) return e.valueString;
    if ("valueNumber" in e) return e.valueNumber;
    if ("valueBoolean" in e) return e.valueBoolean;
    if (Array.isArray(e.valueMap)) {
      var o = {};
      e.valueMap.forEach(function (c) {
        if (c && typeof c.key === "string") o[c.key] = entryValue(c);
      });
      return o;
    }
    return null;
  }

  function setData(s, path, contents) {
    var parts = (typeof path === "string" ? path : "").split("/").filter(Boolean);
    var at = s.data;
    parts.forEach(function (p) {
      if (at[p] === null || typeof at[p] !== "object") at[p] = {};
      at = at[p];
    });
    (contents || []).forEach(function (e) {
      if (e && typeof e.key === "string" && e.key !== "__proto__") at[e.key] = entryValue(e);
    });
  }

  function childIds(s, children, scope) {
    if (!children) return [];
    if (Array.isArray(children.explicitList)) return children.explicitList.map(function (id) { return { id: id, scope: scope }; });
    if (children.template) {
      var items = lookup(s.data, children.template.dataBinding);
      var list = Array.isArray(items) ? items : items && typeof items === "object" ? Object.values(items) : [];
      return list.map(function (item) { return { id: children.template.componentId, scope: item }; });
    }
    return [];
  }

  function el(tag, cls) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    return e;
  }

  function action(s, id, act, scope) {
    var context = {};
    (act && Array.isArray(act.context) ? act.context : []).forEach(function (c) {
      if (c && typeof c.key === "string") context[c.key] = value(s, c.value, scope);
    });
    var userAction = {
      id: (globalThis.crypto && crypto.randomUUID && crypto.randomUUID()) || String(Date.now()),
      name: act && act.name ? String(act.name) : "action",
      surfaceId: s.id,
      sourceComponentId: id,
      timestamp: new Date().toISOString(),
      context: context,
    };
    var body = { userAction: userAction };
    try {
      var wk = globalThis.webkit && webkit.messageHandlers;
      if (wk && wk.clawdbotCanvasA2UIAction) wk.clawdbotCanvasA2UIAction.postMessage(body);
      else if (wk && wk.openclawCanvasA2UIAction) wk.openclawCanvasA2UIAction.postMessage(body);
      else if (globalThis.clawdbotCanvasA2UIAction) globalThis.clawdbotCanvasA2UIAction.postMessage(JSON.stringify(body));
      else if (globalThis.openclawCanvasA2UIAction) globalThis.openclawCanvasA2UIAction.postMessage(JSON.stringify(body));
    } catch (e) { /* no native bridge: the event below still fires */ }
    document.dispatchEvent(new CustomEvent("a2uiaction", { detail: userAction }));
  }

  function render(s, id, scope, depth) {
    if (depth > MAX_DEPTH) return el("span", "a2ui-unknown");
    var def = s.components.get(id);
    if (!def || !def.component || typeof def.component !== "object") {
      var missing = el("span", "a2ui-unknown");
      missing.textContent = "missing component " + id;
      return missing;
    }
    var type = Object.keys(def.component)[0];
    var p = def.component[type] || {};
    var kids = function (node, children) {
      childIds(s, children, scope).forEach(function (c) {
        node.appendChild(render(s, c.id, c.scope, depth + 1));
      });
      return node;
    };
    var node;
    switch (type) {
      case "Text": {
        var hint = p.usageHint || "body";
        node = el(/^h[1-5]$/.test(hint) ? hint : "p", "a2ui-text a2ui-text-" + hint);
        node.textContent = text(s, p.text, scope);
        break;
      }
      case "Image": {
        node = el("img", "a2ui-image");
        node.alt = "";
        var src = text(s, p.url, scope);
        if (/^(https:|data:image\/|\/)/.test(src)) node.src = src;
        break;
      }
      case "Icon":
        node = el("span", "a2ui-icon");
        node.textContent = text(s, p.name, scope);
        break;
      case "Row":
        node = kids(el("div", "a2ui-row"), p.children);
        break;
      case "Column":
      case "List":
        node = kids(el("div", "a2ui-column"), p.children);
        break;
      case "Card":
      case "Modal":
        node = el("div", "a2ui-card");
        if (p.child) node.appendChild(render(s, p.child, scope, depth + 1));
        if (p.contentChild) node.appendChild(render(s, p.contentChild, scope, depth + 1));
        break;
      case "Divider":
        node = el("hr", "a2ui-divider");
        break;
      case "Button":
        node = el("button", "a2ui-button");
        node.type = "button";
        if (p.child) node.appendChild(render(s, p.child, scope, depth + 1));
        else node.textContent = text(s, p.label, scope) || "OK";
        node.addEventListener("click", function () { action(s, id, p.action, scope); });
        break;
      case "CheckBox": {
        node = el("label", "a2ui-checkbox");
        var box = el("input");
        box.type = "checkbox";
        box.checked = !!value(s, p.value, scope);
        node.appendChild(box);
        node.appendChild(document.createTextNode(" " + text(s, p.label, scope)));
        break;
      }
      case "TextField": {
        node = el("label", "a2ui-textfield");
        node.appendChild(document.createTextNode(text(s, p.label, scope) + " "));
        var input = el("input");
        input.value = text(s, p.text, scope);
        node.appendChild(input);
        break;
      }
      case "Slider": {
        node = el("input", "a2ui-slider");
        node.type = "range";
        if (typeof p.minValue === "number") node.min = p.minValue;
        if (typeof p.maxValue === "number") node.max = p.maxValue;
        node.value = text(s, p.value, scope);
        break;
      }
      case "Tabs": {
        node = el("div", "a2ui-tabs");
        var bar = el("div", "a2ui-row");
        var body = el("div", "a2ui-column");
        (Array.isArray(p.tabItems) ? p.tabItems : []).forEach(function (tab, i) {
          var b = el("button", "a2ui-button");
          b.type = "button";
          b.textContent = text(s, tab.title, scope);
          b.addEventListener("click", function () {
            body.replaceChildren(render(s, tab.child, scope, depth + 1));
          });
          bar.appendChild(b);
          if (i === 0) body.appendChild(render(s, tab.child, scope, depth + 1));
        });
        node.appendChild(bar);
        node.appendChild(body);
        break;
      }
      default:
        node = el("span", "a2ui-unknown");
        node.textContent = "unsupported component " + type;
    }
    node.dataset.a2uiId = id;
    return node;
  }

  function paint(s) {
    if (!s.root) return;
    if (!s.el) {
      s.el = el("section", "a2ui-surface");
      s.el.dataset.surfaceId = s.id;
      host().appendChild(s.el);
    }
    s.el.replaceChildren(render(s, s.root, undefined, 0));
  }

  function apply(m) {
    if (!m || typeof m !== "object") throw new Error("an A2UI message is an object");
    if (m.surfaceUpdate) {
      var s = surface(m.surfaceUpdate.surfaceId);
      (m.surfaceUpdate.components || []).forEach(function (c) {
        if (c && typeof c.id === "string" && (s.components.has(c.id) || s.components.size < MAX_COMPONENTS)) {
          s.components.set(c.id, c);
        }
      });
      paint(s);
    } else if (m.dataModelUpdate) {
      var d = surface(m.dataModelUpdate.surfaceId);
      setData(d, m.dataModelUpdate.path, m.dataModelUpdate.contents);
      paint(d);
    } else if (m.beginRendering) {
      var b = surface(m.beginRendering.surfaceId);
      b.root = typeof m.beginRendering.root === "string" ? m.beginRendering.root : "root";
      paint(b);
    } else if (m.deleteSurface) {
      var id = m.deleteSurface.surfaceId || "main";
      var gone = surfaces.get(id);
      if (gone && gone.el) gone.el.remove();
      surfaces.delete(id);
    } else {
      throw new Error("unknown A2UI message: " + Object.keys(m).join(","));
    }
  }

  var api = {
    version: "v0.8",
    applyMessages: function (messages) {
      if (typeof messages === "string") {
        messages = messages.split("\n").filter(function (l) { return l.trim(); }).map(function (l) { return JSON.parse(l); });
      }
      if (!Array.isArray(messages)) return { ok: false, error: "messages must be an array" };
      try {
        messages.forEach(apply);
      } catch (e) {
        return { ok: false, error: String(e && e.message ? e.message : e), surfaces: api.getSurfaces() };
      }
      return { ok: true, surfaces: api.getSurfaces() };
    },
    reset: function () {
      surfaces.forEach(function (s) { if (s.el) s.el.remove(); });
      surfaces.clear();
      return { ok: true };
    },
    getSurfaces: function () {
      return Array.from(surfaces.keys());
    },
  };
  globalThis.clawdbotA2UI = api;
  globalThis.openclawA2UI = api;
  var boot = globalThis.openclawA2UIBoot;
  function start() {
    if (boot && Array.isArray(boot.messages)) api.applyMessages(boot.messages);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
