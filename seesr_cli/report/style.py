"""The report's stylesheet, inlined into the page (no network: system fonts only)."""

CSS = r"""
:root {
  --bg: #16171a; --panel: #202226; --panel2: #292b30; --line: #34373d; --text: #e4e5e7;
  --muted: #9a9ea6; --accent: #6ea8fe; --bad: #ff6b6b; --warn: #e8b35a; --ok: #5fca8e;
  color-scheme: dark;
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header { padding: 20px 28px 12px; border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap;
  gap: 8px 24px; align-items: flex-end; justify-content: space-between; }
header h1 { margin: 0; font-size: 20px; font-weight: 600; letter-spacing: .2px; }
header .where { margin: 2px 0 0; color: var(--muted); font-size: 12.5px; word-break: break-all; }
.stats { display: flex; flex-wrap: wrap; gap: 6px 16px; color: var(--muted); font-size: 13px; margin-top: 8px; }
.stats b { color: var(--text); font-weight: 600; }
.stats .bad b { color: var(--bad); }
#filter { background: var(--panel); color: var(--text); border: 1px solid var(--line); border-radius: 6px;
  padding: 7px 10px; width: 280px; font: inherit; }
main { padding: 18px 28px 40px; }
.failures { border: 1px solid rgba(255,107,107,.45); background: rgba(255,107,107,.07); border-radius: 10px;
  padding: 12px 16px; margin-bottom: 20px; }
.failures h2 { margin: 0 0 8px; font-size: 15px; color: var(--bad); }
.failures ul { margin: 0; padding: 0; list-style: none; }
.failures li { display: grid; grid-template-columns: minmax(140px, 260px) 1fr auto; gap: 4px 16px;
  padding: 6px 0; border-top: 1px solid rgba(255,107,107,.18); }
.failures li:first-child { border-top: 0; }
.failures .name { font-weight: 600; word-break: break-all; }
.failures .err { color: #ffb3b3; }
.failures .path { grid-column: 2; color: var(--muted); font-size: 12px; word-break: break-all; }
.failures time { color: var(--muted); font-size: 12px; white-space: nowrap; }
.showing { color: var(--muted); font-size: 12.5px; margin: 0 0 10px; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 18px; align-items: start; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; overflow: hidden;
  display: flex; flex-direction: column; }
.frame { aspect-ratio: 4 / 3; background: #0e0f11; display: flex; align-items: center; justify-content: center;
  overflow: hidden; position: relative; }
.cmp { position: relative; max-width: 100%; max-height: 100%; touch-action: none; user-select: none;
  cursor: ew-resize; --pos: 50%; }
.cmp.wide { width: 100%; }
.cmp.tall { height: 100%; }
.cmp.solo { cursor: default; }
.cmp img { position: absolute; inset: 0; width: 100%; height: 100%; display: block; }
.cmp img.before { clip-path: inset(0 calc(100% - var(--pos)) 0 0); }
.cmp .divider { position: absolute; top: 0; bottom: 0; left: var(--pos); width: 2px; margin-left: -1px;
  background: rgba(255,255,255,.85); box-shadow: 0 0 4px rgba(0,0,0,.6); pointer-events: none; }
.cmp .label { position: absolute; top: 6px; padding: 1px 6px; border-radius: 4px; font-size: 11px;
  background: rgba(0,0,0,.55); color: #fff; pointer-events: none; }
.cmp .label.l { left: 6px; } .cmp .label.r { right: 6px; }
.cmp.pixelated img { image-rendering: pixelated; }
.tiles { position: absolute; inset: 0; pointer-events: none; opacity: 0; transition: opacity .12s; }
.cmp:hover .tiles, .cmp.hovering .tiles { opacity: 1; }
.tile { position: absolute; border: 1px dashed rgba(255,255,255,.28); }
.tile.hot { border: 2px solid var(--accent); background: rgba(110,168,254,.10); z-index: 2; }
.tile .tags { display: none; position: absolute; left: 0; top: 0; max-width: 100%; padding: 3px 6px;
  background: rgba(14,15,17,.86); color: #fff; font-size: 11.5px; line-height: 1.3; border-bottom-right-radius: 6px; }
.tile.hot .tags { display: block; }
.slider { width: 100%; margin: 0; accent-color: var(--accent); height: 18px; background: var(--panel2); }
.body { padding: 10px 12px 12px; display: flex; flex-direction: column; gap: 7px; }
.title { display: flex; gap: 8px; align-items: center; justify-content: space-between; }
.title a { font-weight: 600; word-break: break-all; }
button { background: var(--panel2); color: var(--text); border: 1px solid var(--line); border-radius: 6px;
  padding: 3px 9px; font: inherit; font-size: 12.5px; cursor: pointer; }
button:hover { border-color: var(--accent); }
button.on { background: var(--accent); color: #0b1220; border-color: var(--accent); }
.sub { color: var(--muted); font-size: 12.5px; }
.chips { display: flex; flex-wrap: wrap; gap: 5px; }
.chip { font-size: 11.5px; padding: 1px 7px; border-radius: 10px; background: var(--panel2);
  border: 1px solid var(--line); color: var(--muted); }
.chip.note { color: var(--warn); border-color: rgba(232,179,90,.45); }
.chip.gone { color: var(--bad); border-color: rgba(255,107,107,.45); }
.bar { display: flex; height: 7px; border-radius: 4px; overflow: hidden; background: var(--panel2); }
.bar span { display: block; height: 100%; }
.legend { display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 11.5px; color: var(--muted); }
.legend i { display: inline-block; width: 8px; height: 8px; border-radius: 2px; margin-right: 4px; }
.s-dape { background: #b48cf2; } .s-text { background: #6ea8fe; } .s-vae_encode { background: #4cc9c0; }
.s-denoise { background: #5fca8e; } .s-vae_decode { background: #e8b35a; } .s-colorfix { background: #f07f9b; }
.s-other { background: #7d828c; }
details { font-size: 12.5px; color: var(--muted); }
details summary { cursor: pointer; color: var(--text); }
details table { border-collapse: collapse; margin-top: 6px; width: 100%; }
details td { padding: 1px 8px 1px 0; vertical-align: top; word-break: break-all; }
details td:first-child { color: var(--muted); white-space: nowrap; word-break: normal; }
details td:last-child { color: var(--text); }
details ol { margin: 4px 0 0; padding-left: 26px; color: var(--text); max-height: 220px; overflow: auto; }
details .ptitle { margin-top: 8px; }
#more { height: 1px; }
#viewer { position: fixed; inset: 0; background: #0b0c0e; z-index: 10; display: flex; flex-direction: column; }
#viewer[hidden] { display: none; }
#viewer .vbar { display: flex; gap: 8px; align-items: center; padding: 8px 14px; border-bottom: 1px solid var(--line); }
#viewer .vname { font-weight: 600; margin-right: auto; word-break: break-all; }
#viewer .vslider { width: 220px; accent-color: var(--accent); }
#viewer .stage { flex: 1; overflow: auto; display: flex; }
#viewer .stage .cmp { margin: auto; flex: none; max-width: none; max-height: none; }
.empty { color: var(--muted); padding: 40px 0; text-align: center; }
"""
