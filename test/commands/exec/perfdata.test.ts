import { describe, expect, it } from 'vitest';
import { metricName, parsePerfdata, parsePluginOutput } from '../../../src/commands/exec/perfdata.js';

describe('parsePerfdata: real-world samples', () => {
  it('reads check_disk (monitoring-plugins 2.3): bytes, thresholds, min and max', () => {
    expect(parsePerfdata(' /=23887609856B;216442024755;243497277849;0;270552530944')).toEqual([
      { name: 'root', value: 23887609856, unit: 'B', kind: 'gauge', warn: 216442024755, crit: 243497277849 },
    ]);
  });

  it('reads check_disk with several mount points, in MB', () => {
    expect(parsePerfdata('/=2643MB;3589;3829;0;4189 /boot=68MB;88;93;0;98 /var/log=512MB;;;0;1024')).toEqual([
      { name: 'root', value: 2643, unit: 'MB', kind: 'gauge', warn: 3589, crit: 3829 },
      { name: 'boot', value: 68, unit: 'MB', kind: 'gauge', warn: 88, crit: 93 },
      { name: 'var_log', value: 512, unit: 'MB', kind: 'gauge' },
    ]);
  });

  it('reads check_load, trailing semicolons and white space included', () => {
    expect(parsePerfdata('load1=1.750;5.000;10.000;0; load5=1.530;4.000;8.000;0; load15=1.060;3.000;6.000;0; ')).toEqual([
      { name: 'load1', value: 1.75, unit: '', kind: 'gauge', warn: 5, crit: 10 },
      { name: 'load5', value: 1.53, unit: '', kind: 'gauge', warn: 4, crit: 8 },
      { name: 'load15', value: 1.06, unit: '', kind: 'gauge', warn: 3, crit: 6 },
    ]);
  });

  it('reads check_ping: milliseconds and a percentage', () => {
    expect(parsePerfdata('rta=0.038000ms;100.000000;200.000000;0.000000 pl=0%;20;50;0;')).toEqual([
      { name: 'rta', value: 0.038, unit: 'ms', kind: 'gauge', warn: 100, crit: 200 },
      { name: 'pl', value: 0, unit: '%', kind: 'gauge', warn: 20, crit: 50 },
    ]);
  });

  it('reads check_http: seconds and bytes with empty thresholds', () => {
    expect(parsePerfdata('time=0.001234s;;;0.000000;10.000000 size=234B;;;0')).toEqual([
      { name: 'time', value: 0.001234, unit: 's', kind: 'gauge' },
      { name: 'size', value: 234, unit: 'B', kind: 'gauge' },
    ]);
  });

  it('reads the other units: us, KB, GB, TB, and c as a counter', () => {
    expect(parsePerfdata('a=5us b=1.5KB c=2GB d=3TB e=12345c;100;200')).toEqual([
      { name: 'a', value: 5, unit: 'us', kind: 'gauge' },
      { name: 'b', value: 1.5, unit: 'KB', kind: 'gauge' },
      { name: 'c', value: 2, unit: 'GB', kind: 'gauge' },
      { name: 'd', value: 3, unit: 'TB', kind: 'gauge' },
      { name: 'e', value: 12345, unit: 'c', kind: 'counter' },
    ]);
  });

  it('keeps units seen in the wild and reads signs and exponents', () => {
    expect(parsePerfdata('temp=-4.5°C;30;40 big=1.5e3 small=+.5')).toEqual([
      { name: 'temp', value: -4.5, unit: '°C', kind: 'gauge', warn: 30, crit: 40 },
      { name: 'big', value: 1500, unit: '', kind: 'gauge' },
      { name: 'small', value: 0.5, unit: '', kind: 'gauge' },
    ]);
  });
});

describe('parsePerfdata: labels', () => {
  it('reads quoted labels with spaces and doubled quotes', () => {
    expect(parsePerfdata(`'C:\\ Used Space'=20.5GB;40;45;0;50 'it''s here'=1 'tab\tbed'=2`)).toEqual([
      { name: 'c_used_space', value: 20.5, unit: 'GB', kind: 'gauge', warn: 40, crit: 45 },
      { name: 'it_s_here', value: 1, unit: '', kind: 'gauge' },
      { name: 'tab_bed', value: 2, unit: '', kind: 'gauge' },
    ]);
  });

  it('makes names unique within one output', () => {
    expect(parsePerfdata('a-b=1 a_b=2 A.B=3 a_b_2=4').map((metric) => metric.name)).toEqual(['a_b', 'a_b_2', 'a_b_3', 'a_b_2_2']);
  });

  it('sanitises labels to lower-case snake_case of [a-z0-9_]', () => {
    expect(metricName('/')).toBe('root');
    expect(metricName('/var/log')).toBe('var_log');
    expect(metricName('connectTime')).toBe('connect_time');
    expect(metricName('CPUUsage')).toBe('cpu_usage');
    expect(metricName('ifInOctets')).toBe('if_in_octets');
    expect(metricName('Température')).toBe('temperature');
    expect(metricName('__x  y__')).toBe('x_y');
    expect(metricName('load1')).toBe('load1');
    expect(metricName('1.3.6.1')).toBe('1_3_6_1');
    expect(metricName('%%')).toBe('');
    for (const label of ['/', '/home/über-user', 'a b c', 'HTTP.Response_Time', '⌚']) expect(metricName(label)).toMatch(/^([a-z0-9]+(_[a-z0-9]+)*)?$/);
  });
});

describe('parsePerfdata: thresholds', () => {
  function thresholds(field: string) {
    const [metric] = parsePerfdata(`x=5;${field};${field}`);
    return { warn: metric?.warn, crit: metric?.crit };
  }

  it('keeps a threshold that alerts only above a number', () => {
    for (const range of ['10', '0:10', '~:10', ':10', '10.0']) expect(thresholds(range), range).toEqual({ warn: 10, crit: 10 });
  });

  it('drops ranges that alert low or inside, and unreadable fields, but keeps the value', () => {
    for (const range of ['10:', '5:10', '-5:10', '@10:20', '@10', 'abc', '10:20:30', '~:']) {
      const [metric] = parsePerfdata(`x=5;${range};${range}`);
      expect(metric, range).toEqual({ name: 'x', value: 5, unit: '', kind: 'gauge' });
    }
  });

  it('gives counters no thresholds', () => {
    expect(parsePerfdata('bytes=100c;10;20')).toEqual([{ name: 'bytes', value: 100, unit: 'c', kind: 'counter' }]);
  });
});

describe('parsePerfdata: malformed entries are skipped, never thrown', () => {
  it('skips what it cannot read and goes on with the next entry', () => {
    const text = "junk a=1 =2 b=U c= d=abc e=0,5 f=1.2.3 g=12x34 'h=3 'unterminated i=4 'j'x=5 '%%'=6 k=1e999 l=7";
    expect(parsePerfdata(text).map((metric) => `${metric.name}=${metric.value}`)).toEqual(['a=1', 'i=4', 'l=7']);
  });

  it('returns nothing for empty, blank or garbage input', () => {
    expect(parsePerfdata('')).toEqual([]);
    expect(parsePerfdata('  \n\t ')).toEqual([]);
    expect(parsePerfdata("'''''")).toEqual([]);
    expect(parsePerfdata('=;=;==')).toEqual([]);
  });
});

describe('parsePluginOutput', () => {
  it('splits the first line into message and perfdata', () => {
    expect(parsePluginOutput('DISK OK - free space: / 81116MiB (78% inode=97%);| /=23887609856B;216442024755;243497277849;0;270552530944\n')).toEqual({
      message: 'DISK OK - free space: / 81116MiB (78% inode=97%);',
      metrics: [{ name: 'root', value: 23887609856, unit: 'B', kind: 'gauge', warn: 216442024755, crit: 243497277849 }],
    });
  });

  it('reads a message without perfdata, trimmed', () => {
    expect(parsePluginOutput('  WARNING: hello world \r\n')).toEqual({ message: 'WARNING: hello world', metrics: [] });
    expect(parsePluginOutput('')).toEqual({ message: '', metrics: [] });
  });

  it('reads long output: perfdata after the first | of the later lines, across lines', () => {
    const output = [
      'DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968',
      '/ 15272 MB (77%);',
      '/boot 68 MB (69%);',
      '/home 69357 MB (27%);',
      '/var/log 819 MB (84%); | /boot=68MB;88;93;0;98',
      '/home=69357MB;253404;253409;0;253414',
      '/var/log=818MB;970;975;0;980',
    ].join('\n');
    const { message, metrics } = parsePluginOutput(output);
    expect(message).toBe('DISK OK - free space: / 3326 MB (56%);');
    expect(metrics.map((metric) => [metric.name, metric.value])).toEqual([
      ['root', 2643],
      ['boot', 68],
      ['home', 69357],
      ['var_log', 818],
    ]);
  });

  it('reads long output perfdata when the first line has none', () => {
    const { message, metrics } = parsePluginOutput('OK: all fine\ndetail one\ndetail two|a=1;2;3\nb=4');
    expect(message).toBe('OK: all fine');
    expect(metrics).toEqual([
      { name: 'a', value: 1, unit: '', kind: 'gauge', warn: 2, crit: 3 },
      { name: 'b', value: 4, unit: '', kind: 'gauge' },
    ]);
  });

  it('ignores long output text without a |', () => {
    expect(parsePluginOutput('OK|a=1\nsome detail a=2\nmore')).toEqual({ message: 'OK', metrics: [{ name: 'a', value: 1, unit: '', kind: 'gauge' }] });
  });
});
