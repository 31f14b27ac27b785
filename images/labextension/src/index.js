// OneLab: the learner's assignments in JupyterLab's left sidebar.
//
// One panel, per course: each released assignment with its due date and where the learner
// stands (not fetched / fetched / submitted at <time>, late / feedback ready / score), and the
// buttons for the next step (Fetch, Open, Validate, Submit, Fetch feedback, Open feedback).
// Everything comes from the learner's own server (images/learner/onelab/onelab_assignments.py),
// the words included: they are OneLab's message catalogue's, in the learner's language.
// Opening JupyterLab with ?onelab=assignments (the class home's link) shows the panel at once.

import { ILabShell, ILayoutRestorer } from '@jupyterlab/application';
import { Dialog, ICommandPalette, Notification, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

const PANEL_ID = 'onelab-assignments';
const OPEN = 'onelab:open-assignments';

const ICON = new LabIcon({
  name: 'onelab:assignments',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">' +
    '<path class="jp-icon3" fill="#616161" d="M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z' +
    'm-1 7V3.5L18.5 9zM8 13h8v2H8zm0 4h5v2H8z"/></svg>'
});

async function api(path, body) {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'onelab/api', path);
  const init = body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) };
  const resp = await ServerConnection.makeRequest(url, init, settings);
  const text = await resp.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch (e) {
    data = { message: text };
  }
  if (!resp.ok) {
    throw new Error(data.message || data.reason || `HTTP ${resp.status}`);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick') {
      node.addEventListener('click', v);
    } else if (v !== undefined && v !== null && v !== false) {
      node.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined && c !== false) {
      node.append(c);
    }
  }
  return node;
}

class AssignmentsPanel extends Widget {
  constructor(app) {
    super();
    this.app = app;
    this.id = PANEL_ID;
    this.addClass('onelab-Assignments');
    this.title.icon = ICON;
    this.title.caption = 'Assignments';
    this.messages = {};
    this.lang = 'ko';
    this.busy = false;
    this.note = null;
  }

  t(text) {
    return this.messages[text] || text;
  }

  onAfterShow() {
    this.refresh();
  }

  when(iso) {
    if (!iso) {
      return '';
    }
    const locale = this.lang === 'ko' ? 'ko-KR' : 'en-US';
    return new Date(iso).toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'short' });
  }

  async refresh() {
    try {
      const data = await api('coursework');
      this.messages = data.messages || {};
      this.lang = data.lang || 'ko';
      this.title.caption = this.t('Assignments');
      this.render(data);
    } catch (e) {
      this.render({ courses: [], error: String(e.message || e) });
    }
  }

  async act(action, body, confirmText) {
    if (this.busy) {
      return;
    }
    if (confirmText) {
      const answer = await showDialog({
        title: this.t('Submit'),
        body: confirmText,
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: this.t('Submit') })]
      });
      if (!answer.button.accept) {
        return;
      }
    }
    this.busy = true;
    this.note = { kind: 'info', text: this.t('Working…') };
    this.node.classList.add('onelab-busy');
    this.renderNote();
    let result;
    try {
      result = await api(action, body);
    } catch (e) {
      result = { success: false, message: String(e.message || e) };
    }
    this.busy = false;
    this.node.classList.remove('onelab-busy');
    this.note = { kind: result.success ? 'ok' : 'error', text: this.validation(result) };
    await this.refresh();
    return result;
  }

  validation(result) {
    if (result.result === undefined) {
      return result.message || '';
    }
    const r = result.result || {};
    if (result.passed) {
      return this.t('Validate') + ': ✓';
    }
    const lines = [];
    for (const key of ['failed', 'changed', 'type_changed']) {
      for (const item of r[key] || []) {
        lines.push(item.source ? `${item.source.split('\n')[0]}\n${item.error || ''}` : JSON.stringify(item));
      }
    }
    return this.t('Validate') + ': ✗\n' + lines.join('\n');
  }

  renderNote() {
    const old = this.node.querySelector('.onelab-note');
    if (old) {
      old.remove();
    }
    if (this.note && this.note.text) {
      const note = el('pre', { class: `onelab-note onelab-note-${this.note.kind}`, role: 'status' }, this.note.text);
      this.node.insertBefore(note, this.node.children[1] || null);
    }
  }

  status(a) {
    if (a.status === 'graded') {
      return `${this.t('Score')} ${a.score} / ${a.max_score}`;
    }
    if (a.status === 'feedback') {
      return this.t('Feedback ready');
    }
    if (a.status === 'submitted') {
      return `${this.t('Submitted')} ${this.when(a.last_submitted)}` + (a.late ? ` (${this.t('late')})` : '');
    }
    if (a.status === 'fetched') {
      return this.t('Fetched, not submitted');
    }
    return this.t('Not fetched yet');
  }

  assignment(course, a) {
    const title = (a.title && (a.title[this.lang] || a.title.en)) || a.id;
    const past = a.due && new Date(a.due) < new Date();
    const body = { course: course.id, assignment: a.id };
    const buttons = el('div', { class: 'onelab-buttons' });
    const button = (label, onclick, primary) =>
      buttons.append(el('button', { class: primary ? 'jp-mod-styled jp-mod-accept' : 'jp-mod-styled', onclick }, this.t(label)));
    if (!a.fetched) {
      button('Fetch', () => this.act('fetch', body), true);
    } else {
      for (const nb of a.notebooks) {
        const name = nb.split('/').pop();
        buttons.append(
          el('button', { class: 'jp-mod-styled onelab-open', title: nb, onclick: () => this.app.commands.execute('docmanager:open', { path: nb }) },
            `${this.t('Open')} ${name}`)
        );
      }
      for (const nb of a.notebooks) {
        const name = nb.split('/').pop();
        buttons.append(
          el('button', { class: 'jp-mod-styled onelab-validate', title: nb, onclick: () => this.act('validate', { path: nb }) },
            `${this.t('Validate')} ${name}`)
        );
      }
      button('Submit', () => this.act('submit', body, this.t('Submit this assignment? You can submit again before the due date; the last one counts.')), true);
    }
    if (a.feedback && a.feedback_files.length === 0) {
      button('Fetch feedback', () => this.act('feedback', body), true);
    }
    for (const html of a.feedback_files || []) {
      buttons.append(
        el('button', {
          class: 'jp-mod-styled jp-mod-accept onelab-feedback', title: html,
          onclick: () => this.app.commands.execute('docmanager:open', { path: html, factory: 'HTML Viewer' })
        }, `${this.t('Open feedback')} ${html.split('/').pop()}`)
      );
    }
    return el('li', { class: `onelab-assignment onelab-status-${a.status}`, 'data-assignment': a.id, 'data-status': a.status },
      el('div', { class: 'onelab-assignment-title' }, title),
      el('div', { class: 'onelab-due' + (past ? ' onelab-past' : '') },
        a.due ? `${this.t('Due')} ${this.when(a.due)}` + (past ? ` · ${this.t('Past due')}` : '') : this.t('No due date')),
      el('div', { class: 'onelab-status' }, this.status(a)),
      buttons);
  }

  render(data) {
    this.node.replaceChildren();
    const head = el('div', { class: 'onelab-head' },
      el('h2', {}, this.t('My assignments')),
      el('button', { class: 'jp-mod-styled onelab-refresh', onclick: () => this.refresh() }, this.t('Refresh')));
    this.node.append(head);
    if (data.error) {
      this.node.append(el('p', { class: 'onelab-error' },
        this.t('The assignments could not be loaded: {error}').replace('{error}', data.error)));
    }
    const courses = data.courses || [];
    if (!courses.length && !data.error) {
      this.node.append(el('p', { class: 'onelab-empty' }, this.t('You are not a learner in any course.')));
    }
    for (const course of courses) {
      const title = (course.title && (course.title[this.lang] || course.title.en)) || course.id;
      const list = el('ul', { class: 'onelab-list' });
      for (const a of course.assignments) {
        list.append(this.assignment(course, a));
      }
      if (!course.assignments.length) {
        list.append(el('li', { class: 'onelab-empty' }, this.t('No assignment has been released to you yet.')));
      }
      this.node.append(el('section', { class: 'onelab-course', 'data-course': course.id }, el('h3', {}, title), list));
    }
    this.renderNote();
  }
}

const plugin = {
  id: '@onelab/assignments:plugin',
  description: "A learner's assignments in the left sidebar.",
  autoStart: true,
  requires: [ILabShell],
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (app, shell, restorer, palette) => {
    const panel = new AssignmentsPanel(app);
    shell.add(panel, 'left', { rank: 50 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }
    app.commands.addCommand(OPEN, {
      label: () => panel.t('Assignments'),
      execute: () => shell.activateById(PANEL_ID)
    });
    if (palette) {
      palette.addItem({ command: OPEN, category: 'OneLab' });
    }
    // the panel's caption in the learner's language as soon as the words are known
    panel.refresh();
    const params = new URLSearchParams(window.location.search);
    if (params.get('onelab') === 'assignments') {
      app.restored.then(() => shell.activateById(PANEL_ID));
    }
  }
};

// Why work stopped (images/learner/onelab/onelab_notices.py): a kernel the OOM killer ended, or
// the whole server, which the hub started again. Each notice is shown once, in the learner's
// language; a server restart waits for the learner's OK, a kernel's stays in the corner.
const NOTICE_EVERY_MS = 5000;

const notices = {
  id: '@onelab/assignments:notices',
  description: 'Tells the learner why a kernel or the server stopped (out of memory).',
  autoStart: true,
  activate: app => {
    let kills = null;
    const seen = new Set(JSON.parse(sessionStorage.getItem('onelab-notices') || '[]'));
    const check = async () => {
      let data;
      try {
        data = await api('notices');
      } catch (e) {
        return; // the server is restarting: ask again later
      }
      for (const n of data.notices || []) {
        if (!seen.has(n.id)) {
          seen.add(n.id);
          sessionStorage.setItem('onelab-notices', JSON.stringify([...seen]));
          await showDialog({
            title: 'OneLab',
            body: n.text,
            buttons: [Dialog.okButton()]
          });
        }
      }
      if (typeof data.oom_kills === 'number') {
        if (kills !== null && data.oom_kills > kills) {
          Notification.warning(data.kernel_oom, { autoClose: false });
        }
        kills = data.oom_kills;
      }
    };
    app.restored.then(() => {
      check();
      setInterval(check, NOTICE_EVERY_MS);
    });
  }
};

export default [plugin, notices];
