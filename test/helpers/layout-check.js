// Injected into a copy of a report page and run by headless Chromium (--dump-dom): measures the
// rendered layout and writes the findings as JSON into <pre id="layout-check">.
//   overlaps   pairs of <text> in one chart whose boxes intersect (by more than 1 px each way)
//   outside    <text> that sticks out of its chart
//   overflow   elements wider than the page (horizontal scrolling outside a .table-wrap)
//   sums       per policy row: win + tie + loss as rendered, in percent
//   legends    per chart: legend names, and the data-name of every drawn series
(() => {
  const boxes = (svg) =>
    [...svg.querySelectorAll('text')]
      .filter((t) => t.textContent.trim() && t.getBBox().width > 0)
      .map((t) => ({ text: t.textContent, r: t.getBoundingClientRect() }));
  const hit = (a, b) =>
    Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 &&
    Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
  const overlaps = [],
    outside = [],
    legends = [];
  for (const svg of document.querySelectorAll('svg')) {
    const title = svg.getAttribute('aria-label');
    const frame = svg.getBoundingClientRect();
    const b = boxes(svg);
    for (let i = 0; i < b.length; i++) {
      const r = b[i].r;
      if (r.left < frame.left - 1 || r.right > frame.right + 1 || r.top < frame.top - 1 || r.bottom > frame.bottom + 1)
        outside.push({ chart: title, text: b[i].text });
      for (let j = i + 1; j < b.length; j++)
        if (hit(r, b[j].r)) overlaps.push({ chart: title, a: b[i].text, b: b[j].text });
    }
    const legend = svg.querySelector('g.legend');
    if (legend && svg.querySelector('g.series'))
      legends.push({
        chart: title,
        names: [...legend.querySelectorAll('text')].map((t) => t.textContent),
        series: [...svg.querySelectorAll('g.series')].map((g) => g.getAttribute('data-name')),
      });
  }
  const width = document.documentElement.clientWidth;
  const overflow = [...document.querySelectorAll('main > *')]
    .filter((e) => !e.closest('.table-wrap') && e.getBoundingClientRect().right > width + 1)
    .map((e) => e.tagName + '.' + e.className);
  const pct = (td) => Number(td.textContent.replace('%', ''));
  const sums = [...document.querySelectorAll('tr[data-policy]')].map((tr) => ({
    policy: tr.getAttribute('data-policy'),
    sum: pct(tr.querySelector('td.win')) + pct(tr.querySelector('td.tie')) + pct(tr.querySelector('td.loss')),
  }));
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify({
    width,
    overlaps,
    outside,
    overflow,
    sums,
    legends,
    charts: document.querySelectorAll('svg').length,
  });
  document.body.appendChild(pre);
})();
