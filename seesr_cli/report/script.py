"""The report's script, inlined into the page.

Cards are built from the inline JSON a chunk at a time, as the end of the grid scrolls near
(IntersectionObserver), so a 1000-image report starts with a couple of dozen cards in the DOM;
thumbnails load lazily and the full-size images only when the 1:1 viewer opens. Text from the
data goes in through `textContent`, never as HTML.
"""

JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var STAGES = ["dape", "text", "vae_encode", "denoise", "vae_decode", "colorfix"];
  var CHUNK = 24, MARGIN = 900;
  var grid = document.getElementById("grid"), sentinel = document.getElementById("more");
  var showing = document.getElementById("showing"), filter = document.getElementById("filter");
  var list = data.items, shown = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function secs(s) { return (s >= 100 ? s.toFixed(0) : s >= 10 ? s.toFixed(1) : s.toFixed(2)) + " s"; }
  function size(n) {
    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : n >= 1024 ? Math.round(n / 1024) + " kB" : n + " B";
  }
  function pct(v, whole) { return (100 * v / whole) + "%"; }

  // ------------------------------------------------------------- comparison and tiles
  function image(src, cls, alt, lazy) {
    var im = el("img", cls);
    im.alt = alt; im.decoding = "async"; im.draggable = false;
    if (lazy) im.loading = "lazy";
    im.src = src;
    return im;
  }

  function compare(item, full) {
    var root = el("div", "cmp"), api = { root: root, item: item, pos: 50, onchange: null };
    root.style.aspectRatio = item.w + " / " + item.h;
    root.appendChild(image(full ? item.A : item.a, "after", "SeeSR result", !full));
    if (item.b) {
      root.appendChild(image(full ? item.B : item.b, "before", "bicubic upscale of the input", !full));
      root.appendChild(el("div", "divider"));
      root.appendChild(el("span", "label l", "bicubic"));
      root.appendChild(el("span", "label r", "SeeSR"));
    } else {
      root.classList.add("solo");
    }
    api.set = function (p) {
      api.pos = Math.max(0, Math.min(100, p));
      root.style.setProperty("--pos", api.pos + "%");
      if (api.onchange) api.onchange(api.pos);
    };
    var tiles = item.tiles && item.tiles.length ? tileLayer(root, item) : null;
    wirePointer(root, item, api, tiles, !!item.b);
    return api;
  }

  function wirePointer(root, item, api, tiles, slidable) {
    var dragging = false;
    function at(e) {
      var r = root.getBoundingClientRect();
      return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height];
    }
    root.addEventListener("pointerdown", function (e) {
      if (!slidable || e.button !== 0) return;
      dragging = true;
      root.setPointerCapture(e.pointerId);
      api.set(100 * at(e)[0]);
      e.preventDefault();
    });
    root.addEventListener("pointermove", function (e) {
      var f = at(e);
      if (dragging) api.set(100 * f[0]);
      if (tiles) tiles.hover(f[0] * item.w, f[1] * item.h);
    });
    function stop() { dragging = false; }
    root.addEventListener("pointerup", stop);
    root.addEventListener("pointercancel", stop);
    root.addEventListener("pointerleave", function () { if (tiles) tiles.hover(-1, -1); });
  }

  // Tiles overlap: the one whose centre is nearest the pointer is the one shown.
  function tileLayer(root, item) {
    var layer = el("div", "tiles"), boxes = null, hot = null;
    root.appendChild(layer);
    function build() {
      boxes = item.tiles.map(function (t) {
        var b = t[0], d = el("div", "tile");
        d.style.left = pct(b[0], item.w); d.style.top = pct(b[1], item.h);
        d.style.width = pct(b[2], item.w); d.style.height = pct(b[3], item.h);
        d.appendChild(el("div", "tags", t[1].length ? t[1].join(", ") : (t[2] || "(no tags)")));
        layer.appendChild(d);
        return d;
      });
    }
    function nearest(x, y) {
      var best = -1, bestD = Infinity;
      item.tiles.forEach(function (t, i) {
        var b = t[0];
        if (x < b[0] || y < b[1] || x >= b[0] + b[2] || y >= b[1] + b[3]) return;
        var dx = x - b[0] - b[2] / 2, dy = y - b[1] - b[3] / 2, d = dx * dx + dy * dy;
        if (d < bestD) { best = i; bestD = d; }
      });
      return best;
    }
    return { hover: function (x, y) {
      if (!boxes) build();
      var i = nearest(x, y), next = i >= 0 ? boxes[i] : null;
      if (next === hot) return;
      if (hot) hot.classList.remove("hot");
      if (next) next.classList.add("hot");
      hot = next;
      root.classList.toggle("hovering", !!next);
    } };
  }

  function slider(cmp, cls) {
    var r = el("input", cls);
    r.type = "range"; r.min = "0"; r.max = "100"; r.step = "0.1"; r.value = "50";
    r.setAttribute("aria-label", "bicubic / SeeSR");
    r.addEventListener("input", function () { cmp.set(+r.value); });
    cmp.onchange = function (p) { r.value = String(p); };
    return r;
  }

  // ------------------------------------------------------------- cards
  function card(item) {
    var art = el("article", "card"), frame = el("div", "frame");
    art.dataset.name = item.name;
    art.appendChild(frame);
    if (!item.a) {
      frame.appendChild(el("div", "empty", "no preview"));
      art.appendChild(cardBody(item));
      return art;
    }
    var cmp = compare(item, false);
    cmp.root.classList.add(item.w * 3 >= item.h * 4 ? "wide" : "tall");
    frame.appendChild(cmp.root);
    if (item.b) art.appendChild(slider(cmp, "slider"));
    art.appendChild(cardBody(item));
    return art;
  }

  function cardBody(item) {
    var body = el("div", "body"), title = el("div", "title"), link = el("a", "name", item.name);
    link.href = item.href;
    var zoom = el("button", "zoom", "1:1");
    zoom.title = "Open at full size (1:1 pixels)";
    zoom.addEventListener("click", function () { openViewer(item); });
    title.appendChild(link);
    if (item.A) title.appendChild(zoom);
    body.appendChild(title);
    body.appendChild(el("div", "sub", subline(item)));
    var chips = chipsOf(item);
    if (chips.childNodes.length) body.appendChild(chips);
    if (item.t && item.t.length) body.appendChild(timing(item.t));
    body.appendChild(detailsOf(item));
    return body;
  }

  function subline(item) {
    var parts = [];
    parts.push((item.iw ? item.iw + "\u00d7" + item.ih + " \u2192 " : "") + item.w + "\u00d7" + item.h);
    parts.push(item.fmt, size(item.bytes));
    if (item.seed !== null) parts.push("seed " + item.seed);
    return parts.join(" \u00b7 ");
  }

  function chipsOf(item) {
    var chips = el("div", "chips"), env = item.env !== null ? data.envs[item.env] : null;
    if (env && env.device) chips.appendChild(el("span", "chip", env.device + (env.dtype ? " \u00b7 " + env.dtype : "")));
    (item.notes || []).forEach(function (n) { chips.appendChild(el("span", "chip note", n)); });
    if (item.gone) chips.appendChild(el("span", "chip gone", "input gone: " + item.input));
    else if (!item.input) chips.appendChild(el("span", "chip gone", "input not recorded (older seesr-cli)"));
    if (item.problem) chips.appendChild(el("span", "chip gone", item.problem));
    return chips;
  }

  function timing(stages) {
    var wrap = el("div", "timing"), bar = el("div", "bar"), legend = el("div", "legend");
    var total = stages.reduce(function (s, st) { return s + st[1]; }, 0) || 1;
    stages.forEach(function (st) {
      var cls = STAGES.indexOf(st[0]) >= 0 ? "s-" + st[0] : "s-other", seg = el("span", cls), key = el("span");
      seg.style.width = pct(st[1], total); seg.title = st[0] + " " + secs(st[1]);
      bar.appendChild(seg);
      key.appendChild(el("i", cls)); key.appendChild(document.createTextNode(st[0] + " " + secs(st[1])));
      legend.appendChild(key);
    });
    legend.appendChild(el("span", null, "total " + secs(total)));
    wrap.appendChild(bar); wrap.appendChild(legend);
    return wrap;
  }

  // Details are built when first opened: a closed card costs a summary line.
  function detailsOf(item) {
    var d = el("details"), built = false;
    d.appendChild(el("summary", null, "settings, run, prompts"));
    d.addEventListener("toggle", function () {
      if (built || !d.open) return;
      built = true;
      var table = el("table");
      rows(item).forEach(function (kv) {
        var tr = el("tr");
        tr.appendChild(el("td", null, kv[0])); tr.appendChild(el("td", null, kv[1]));
        table.appendChild(tr);
      });
      d.appendChild(table);
      var prompts = item.tiles.length ? item.tiles.map(function (t) { return t[2] || t[1].join(", "); }) : item.prompts;
      if (prompts.length) {
        var ol = el("ol");
        d.appendChild(el("div", "ptitle", (item.tiles.length ? "tile prompts (DAPE tags)" : "prompts") +
                         " \u00b7 " + prompts.length));
        prompts.forEach(function (p) { ol.appendChild(el("li", null, p || "(empty prompt)")); });
        d.appendChild(ol);
      }
    });
    return d;
  }

  function rows(item) {
    var out = [["source", item.src], ["input", item.input || "(not recorded)"], ["seed", item.seed],
               ["base seed", item.bseed]];
    function add(prefix, obj) {
      Object.keys(obj || {}).sort().forEach(function (k) {
        var v = obj[k];
        if (v !== null && typeof v === "object" && !Array.isArray(v)) add(prefix + k + ".", v);
        else out.push([prefix + k, Array.isArray(v) ? v.join(" \u00d7 ") : String(v)]);
      });
    }
    add("", item.set !== null ? data.settings[item.set] : {});
    add("run.", item.env !== null ? data.envs[item.env] : {});
    return out.filter(function (kv) { return kv[1] !== null && kv[1] !== undefined; });
  }

  // ------------------------------------------------------------- full-size viewer
  var viewer = document.getElementById("viewer"), stage = viewer.querySelector(".stage");
  var vname = viewer.querySelector(".vname"), vslider = viewer.querySelector(".vslider");
  var current = null, zoom = 1;

  function openViewer(item) {
    current = compare(item, true);
    stage.textContent = "";
    stage.appendChild(current.root);
    vname.textContent = item.name + "  (" + item.w + "\u00d7" + item.h + ")";
    vslider.hidden = !item.b; vslider.value = "50";
    current.onchange = function (p) { vslider.value = String(p); };
    viewer.hidden = false;
    document.body.style.overflow = "hidden";
    setZoom(1);
  }
  function closeViewer() {
    viewer.hidden = true; stage.textContent = ""; current = null;
    document.body.style.overflow = "";
  }
  // zoom: device pixels per image pixel (1 = 1:1 on any screen), 0 = fit the window.
  function setZoom(z) {
    var item = current.item, dpr = window.devicePixelRatio || 1, root = current.root;
    var scale = z ? z / dpr : Math.min(stage.clientWidth / item.w, stage.clientHeight / item.h);
    var cx = (stage.scrollLeft + stage.clientWidth / 2) / Math.max(stage.scrollWidth, 1);
    var cy = (stage.scrollTop + stage.clientHeight / 2) / Math.max(stage.scrollHeight, 1);
    zoom = z;
    root.style.width = item.w * scale + "px"; root.style.height = item.h * scale + "px";
    root.classList.toggle("pixelated", z >= 2);
    stage.scrollLeft = cx * stage.scrollWidth - stage.clientWidth / 2;
    stage.scrollTop = cy * stage.scrollHeight - stage.clientHeight / 2;
    viewer.querySelectorAll("[data-zoom]").forEach(function (b) { b.classList.toggle("on", +b.dataset.zoom === z); });
  }
  viewer.querySelectorAll("[data-zoom]").forEach(function (b) {
    b.addEventListener("click", function () { setZoom(+b.dataset.zoom); });
  });
  vslider.addEventListener("input", function () { if (current) current.set(+vslider.value); });
  viewer.querySelector(".close").addEventListener("click", closeViewer);
  document.addEventListener("keydown", function (e) {
    if (!current) return;
    if (e.key === "Escape") closeViewer();
    else if (e.key === "0" || e.key === "f") setZoom(0);
    else if (e.key === "1" || e.key === "2" || e.key === "4") setZoom(+e.key);
  });

  // ------------------------------------------------------------- incremental grid and filter
  function pump() {
    var end = Math.min(list.length, shown + CHUNK), frag = document.createDocumentFragment();
    for (; shown < end; shown++) frag.appendChild(card(list[shown]));
    grid.appendChild(frag);
    showing.textContent = list.length ? "Showing " + shown + " of " + list.length + " results" +
      (list.length < data.items.length ? " (filtered from " + data.items.length + ")" : "") : "No results to show.";
    if (shown < list.length && sentinel.getBoundingClientRect().top < window.innerHeight + MARGIN) {
      window.requestAnimationFrame(pump);
    }
  }
  function haystack(item) {
    if (item.q === undefined) {
      var words = [item.name, item.src].concat(item.notes || []);
      item.tiles.forEach(function (t) { words = words.concat(t[1]); });
      item.q = words.join(" \n").toLowerCase();
    }
    return item.q;
  }
  filter.addEventListener("input", function () {
    var q = filter.value.trim().toLowerCase();
    list = q ? data.items.filter(function (it) { return haystack(it).indexOf(q) >= 0; }) : data.items;
    grid.textContent = ""; shown = 0;
    pump();
  });
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (seen) {
      if (seen.some(function (s) { return s.isIntersecting; })) pump();
    }, { rootMargin: MARGIN + "px" }).observe(sentinel);
  } else {
    CHUNK = Infinity;
  }
  pump();
})();
"""
