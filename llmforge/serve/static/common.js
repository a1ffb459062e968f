// Shared by the llmforge pages: the reviewer's name (kept in this browser), JSON calls, status lines.
"use strict";

const $ = (sel) => document.querySelector(sel);

function personName() {
  return localStorage.getItem("llmforge.person") || "";
}

function setPersonName(name) {
  localStorage.setItem("llmforge.person", name);
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (data.error && data.error.message) || response.statusText;
    throw new Error(message);
  }
  return data;
}

function say(text, isError) {
  const el = $("#status");
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

function requireName() {
  const name = personName();
  if (!name) {
    window.location.href = "/review?next=" + encodeURIComponent(window.location.pathname);
    return null;
  }
  const who = $("#who");
  if (who) who.textContent = "reviewing as " + name;
  return name;
}

// A keyboard shortcut must not fire while the person types a reason or a correction.
function typing(event) {
  const tag = (event.target.tagName || "").toLowerCase();
  return tag === "textarea" || tag === "input" || tag === "select";
}

function showPrompt(el, item) {
  el.textContent = "";
  const turns = item.messages && item.messages.length ? item.messages : [{ role: "user", content: item.prompt }];
  for (const m of turns) {
    const div = document.createElement("div");
    div.className = "msg";
    const role = document.createElement("div");
    role.className = "role";
    role.textContent = m.role;
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = m.content;
    div.append(role, text);
    el.append(div);
  }
}
