// The explorer's playlists: a mix from liked and avoided songs (POST /recommend), a path
// between two songs (GET /songs/{a}/path/{b}), "keep playing" (POST /radio); the list plays
// in order in the page and downloads as .m3u8 (the server's own format=m3u answers).
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  const picks = { like: [], avoid: [], from: null, to: null };
  // The list shown, and the calls that made it (the download asks each for its M3U).
  const list = { songs: [], calls: [], seeds: [], playing: -1 };

  function headers(extra = {}) {
    const h = new Headers(extra);
    const key = sessionStorage.getItem("musicsim-api-key");
    if (key) h.set("X-API-Key", key);
    return h;
  }

  function say(text) {
    const box = byId("message");
    if (!box) return;
    box.textContent = text || "";
    box.hidden = !text;
  }

  function problem(status, body) {
    const detail = body && body.detail;
    if (Array.isArray(detail)) return detail.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; ");
    return detail ? String(detail) : `the server answered ${status}`;
  }

  async function send(call, format = "json") {
    const separator = call.path.includes("?") ? "&" : "?";
    const path = format === "json" ? call.path : `${call.path}${separator}format=${format}`;
    const options = { method: call.method, headers: headers() };
    if (call.body) {
      options.headers.set("Content-Type", "application/json");
      options.body = JSON.stringify(call.body);
    }
    const response = await fetch(path, options);
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(problem(response.status, body));
    }
    return format === "json" ? response.json() : response.text();
  }

  async function attempt(work) {
    say("");
    try {
      await work();
    } catch (error) {
      say(error.message);
    }
  }

  function node(tag, attributes = {}, ...children) {
    const n = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "onclick") n.addEventListener("click", value);
      else n.setAttribute(name, value);
    }
    n.append(...children);
    return n;
  }

  const label = (song) => `${song.title || "(untitled)"} — ${song.artist.name}`;

  function minutes(seconds) {
    if (seconds == null) return "";
    const s = Math.round(seconds);
    return ` (${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")})`;
  }

  // --- picking songs ------------------------------------------------------------------

  async function search() {
    const params = new URLSearchParams({ limit: 10 });
    const q = byId("pl-search").value.trim();
    if (q) params.set("q", q);
    const page = await send({ method: "GET", path: `/songs?${params}` });
    byId("pl-search-results").replaceChildren(
      ...page.items.map((song) =>
        node(
          "li",
          { "data-song-id": song.id },
          `${label(song)} `,
          pickButton("like", song, () => picks.like.push(song)),
          pickButton("avoid", song, () => picks.avoid.push(song)),
          pickButton("from", song, () => (picks.from = song)),
          pickButton("to", song, () => (picks.to = song)),
        ),
      ),
    );
  }

  function pickButton(role, song, pick) {
    return node("button", { type: "button", class: `pl-pick-${role}`, onclick: () => {
      pick();
      showPicks();
    } }, role);
  }

  function showPicks() {
    const names = (songs) => songs.map(label).join("; ") || "none";
    byId("pl-like").textContent = names(picks.like);
    byId("pl-avoid").textContent = names(picks.avoid);
    byId("pl-from").textContent = picks.from ? label(picks.from) : "?";
    byId("pl-to").textContent = picks.to ? label(picks.to) : "?";
  }

  function options() {
    const values = {};
    const maxArtist = byId("pl-max-artist").value.trim();
    if (maxArtist) values.max_per_artist = Number(maxArtist);
    return values;
  }

  // --- building lists -----------------------------------------------------------------

  async function makeMix() {
    if (!picks.like.length) throw new Error("pick at least one song to like");
    const body = {
      positive: picks.like.map((s) => s.id),
      negative: picks.avoid.map((s) => s.id),
      k: Number(byId("pl-k").value) || 10,
      diversity: Number(byId("pl-diversity").value) || 0,
      ...options(),
    };
    const call = { method: "POST", path: "/recommend", body };
    const answer = await send(call);
    start(`Mix from ${picks.like.length} song(s)`, call, answer.results, body.positive);
  }

  async function makePath() {
    if (!picks.from || !picks.to) throw new Error("pick a song to start from and one to end at");
    const params = new URLSearchParams({ length: Number(byId("pl-k").value) || 10, ...options() });
    const call = { method: "GET", path: `/songs/${picks.from.id}/path/${picks.to.id}?${params}` };
    const answer = await send(call);
    start(`Path: ${label(picks.from)} → ${label(picks.to)}`, call, answer.results, [
      picks.from.id,
      picks.to.id,
    ]);
  }

  async function keepPlaying() {
    const body = { seeds: list.seeds, history: list.songs.map((s) => s.id), n: 10, ...options() };
    const call = { method: "POST", path: "/radio", body };
    const answer = await send(call);
    list.calls.push(call);
    list.songs.push(...answer.results);
    show();
  }

  function start(title, call, songs, seeds) {
    stop();
    byId("pl-title").textContent = title;
    list.songs = [...songs];
    list.calls = [call];
    list.seeds = seeds;
    show();
  }

  function show() {
    byId("pl-results").replaceChildren(
      ...list.songs.map((song, i) =>
        node(
          "li",
          { "data-song-id": song.id, class: i === list.playing ? "pl-playing" : "" },
          `${label(song)}${minutes(song.duration)}`,
        ),
      ),
    );
    for (const id of ["pl-play", "pl-more", "pl-download"]) byId(id).disabled = !list.songs.length;
  }

  // --- playing and downloading --------------------------------------------------------

  function play(i) {
    const audio = byId("pl-audio");
    if (i >= list.songs.length) return stop();
    list.playing = i;
    show();
    const song = list.songs[i];
    byId("pl-now").textContent = `playing ${i + 1}/${list.songs.length}: ${label(song)}`;
    audio.src = `/songs/${song.id}/audio`;
    audio.play().catch(() => {}); // a song without audio raises "error", which skips it
  }

  function stop() {
    const audio = byId("pl-audio");
    audio.pause();
    audio.removeAttribute("src");
    list.playing = -1;
    byId("pl-now").textContent = "";
  }

  async function download() {
    // One M3U per call, joined: the server writes the entries, this only drops repeated headers.
    const parts = [];
    for (const call of list.calls) parts.push(await send(call, "m3u"));
    const entries = parts.map((text) => text.replace(/^#EXTM3U\r?\n/, "")).join("");
    const blob = new Blob([`#EXTM3U\n${entries}`], { type: "audio/x-mpegurl" });
    const link = node("a", { href: URL.createObjectURL(blob), download: "musicsim.m3u8" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  function wire() {
    byId("pl-search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      attempt(search);
    });
    byId("pl-mix").addEventListener("click", () => attempt(makeMix));
    byId("pl-path").addEventListener("click", () => attempt(makePath));
    byId("pl-more").addEventListener("click", () => attempt(keepPlaying));
    byId("pl-download").addEventListener("click", () => attempt(download));
    byId("pl-play").addEventListener("click", () => play(0));
    byId("pl-clear").addEventListener("click", () => {
      Object.assign(picks, { like: [], avoid: [], from: null, to: null });
      showPicks();
    });
    const audio = byId("pl-audio");
    audio.addEventListener("ended", () => play(list.playing + 1));
    audio.addEventListener("error", () => {
      if (list.playing >= 0) play(list.playing + 1); // no audio for this song: the next one
    });
    showPicks();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
