import json, sys, glob, random, statistics as st
def ratios(files):
    out = {}
    for f in files:
        j = json.load(open(f)); runs = j['shapes']['tiny']['runs']
        base = {}
        for r in runs:
            if r['mode'] == 'base': base.setdefault((r['round'], r['distribution']), []).append(r['tokens_per_s'])
        for r in runs:
            if r['mode'] == 'base': continue
            b = base.get((r['round'], r['distribution'])) or base.get((r['round'], 'uniform'))
            key = (r['mode'], r.get('factor_precision', r.get('precision')), r['distribution'])
            out.setdefault(key, []).append(r['tokens_per_s'] / st.mean(b))
    return out
def boot(v, n=10000):
    rnd = random.Random(1); m = []
    for _ in range(n): m.append(st.median([rnd.choice(v) for _ in v]))
    m.sort(); return m[int(0.025*n)], m[int(0.975*n)]
for label in sys.argv[1:]:
    files = sorted(glob.glob(label + '/serving_*.json'))
    o = ratios(files)
    print('==', label, len(files), 'files')
    for k in sorted(o): print('  ', k, 'median %.3f n %d' % (st.median(o[k]), len(o[k])))
    for mode in ('auto', 'factorized'):
        for prec in ('float16', 'int8'):
            v = o.get((mode, prec, 'uniform'), []) + o.get((mode, prec, 'zipf'), [])
            if v: lo, hi = boot(v); print('   pooled %s %s: %.3f (%.3f-%.3f) n %d' % (mode, prec, st.median(v), lo, hi, len(v)))
    bases = []
    for f in files:
        for r in json.load(open(f))['shapes']['tiny']['runs']:
            if r['mode'] == 'base': bases.append(r['tokens_per_s'])
    print('   base tok/s median %.0f (%.0f-%.0f)' % (st.median(bases), min(bases), max(bases)))
