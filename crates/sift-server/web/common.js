// What the pages share (served at /assets/common.js): the keyed fetch, building elements, and
// reading a server-sent event stream.
"use strict";

// fetch, with the service key: asked for once on a 401 and kept for the tab's life in
// sessionStorage (gone when the tab closes), sent as `Authorization: Bearer`.
async function call(path, init) {
  for (let tries = 0; tries < 2; tries++) {
    const key = sessionStorage.getItem("sift-key");
    const headers = Object.assign({}, init && init.headers, key ? { Authorization: "Bearer " + key } : {});
    const response = await fetch(path, Object.assign({}, init, { headers }));
    if (response.status === 401 && tries === 0) {
      const given = prompt("This sift needs a service key:");
      if (!given) throw new Error("a service key is needed");
      sessionStorage.setItem("sift-key", given);
      continue;
    }
    return response;
  }
  throw new Error("the service key was refused");
}

// GET a JSON document; an error answer throws with its detail.
async function api(path) {
  const response = await call(path);
  const body = await response.json();
  if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : response.statusText);
  return body;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const c of children) node.append(c);
  return node;
}

const $ = (id) => document.getElementById(id);

// Reads a server-sent event stream to its end, calling handle(event, data) for each event
// (`message` when it names none; its data lines joined).
async function readEvents(response, handle) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const flush = (block) => {
    let event = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (data) handle(event, data);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      flush(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
  if (buffer.trim()) flush(buffer);
}

// USD, with enough digits for a fraction of a cent.
function usd(n) {
  return n === 0 ? "$0" : n < 0.01 ? "$" + n.toPrecision(2) : "$" + n.toFixed(4);
}
