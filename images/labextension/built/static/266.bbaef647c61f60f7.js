"use strict";(self.rspackChunk_onelab_assignments=self.rspackChunk_onelab_assignments||[]).push([[266],{646(e,n,t){var o=t(601),r=t.n(o),a=t(314),s=(t.n(a))()(r());s.push([e.id,`/* OneLab assignments panel: JupyterLab's own variables, so light and dark themes both work. */
.onelab-Assignments {
  padding: 8px 12px;
  overflow-y: auto;
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
  font-size: var(--jp-ui-font-size1);
}
.onelab-Assignments.onelab-busy { cursor: progress; }
.onelab-head { display: flex; align-items: center; justify-content: space-between; }
.onelab-head h2 { font-size: var(--jp-ui-font-size3); margin: 4px 0; }
.onelab-course h3 { font-size: var(--jp-ui-font-size2); margin: 12px 0 4px; }
.onelab-list { list-style: none; padding: 0; margin: 0; }
.onelab-assignment {
  border: 1px solid var(--jp-border-color2);
  border-radius: 4px;
  padding: 8px;
  margin: 6px 0;
}
.onelab-assignment-title { font-weight: 600; }
.onelab-due, .onelab-status { color: var(--jp-ui-font-color2); margin-top: 2px; }
.onelab-past { color: var(--jp-warn-color0); }
.onelab-status-graded .onelab-status, .onelab-status-feedback .onelab-status {
  color: var(--jp-success-color0); font-weight: 600;
}
.onelab-buttons { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 6px; }
.onelab-buttons button { font-size: var(--jp-ui-font-size1); }
.onelab-note {
  white-space: pre-wrap;
  padding: 6px;
  border-radius: 4px;
  font-family: var(--jp-ui-font-family);
}
.onelab-note-ok { background: var(--jp-success-color3); }
.onelab-note-error, .onelab-error { background: var(--jp-error-color3); }
.onelab-note-info { background: var(--jp-info-color3); }
`,""]),t.d(n,{},{A:s})},314(e){e.exports=function(e){var n=[];return n.toString=function(){return this.map(function(n){var t="",o=void 0!==n[5];return n[4]&&(t+="@supports (".concat(n[4],") {")),n[2]&&(t+="@media ".concat(n[2]," {")),o&&(t+="@layer".concat(n[5].length>0?" ".concat(n[5]):""," {")),t+=e(n),o&&(t+="}"),n[2]&&(t+="}"),n[4]&&(t+="}"),t}).join("")},n.i=function(e,t,o,r,a){"string"==typeof e&&(e=[[null,e,void 0]]);var s={};if(o)for(var i=0;i<this.length;i++){var c=this[i][0];null!=c&&(s[c]=!0)}for(var l=0;l<e.length;l++){var u=[].concat(e[l]);o&&s[u[0]]||(void 0!==a&&(void 0===u[5]||(u[1]="@layer".concat(u[5].length>0?" ".concat(u[5]):""," {").concat(u[1],"}")),u[5]=a),t&&(u[2]&&(u[1]="@media ".concat(u[2]," {").concat(u[1],"}")),u[2]=t),r&&(u[4]?(u[1]="@supports (".concat(u[4],") {").concat(u[1],"}"),u[4]=r):u[4]="".concat(r)),n.push(u))}},n}},601(e){e.exports=function(e){return e[1]}},665(e,n,t){t.r(n);var o=t(72),r=t.n(o),a=t(825),s=t.n(a),i=t(659),c=t.n(i),l=t(56),u=t.n(l),p=t(540),d=t.n(p),f=t(113),v=t.n(f),b=t(646),m={};m.styleTagTransform=v(),m.setAttributes=u(),m.insert=c().bind(null,"head"),m.domAPI=s(),m.insertStyleElement=d(),r()(b.A,m);let g=b.A&&b.A.locals?b.A.locals:void 0;t.d(n,{},{default:g})},72(e){var n=[];function t(e){for(var t=-1,o=0;o<n.length;o++)if(n[o].identifier===e){t=o;break}return t}function o(e,o){for(var r={},a=[],s=0;s<e.length;s++){var i=e[s],c=o.base?i[0]+o.base:i[0],l=r[c]||0,u="".concat(c," ").concat(l);r[c]=l+1;var p=t(u),d={css:i[1],media:i[2],sourceMap:i[3],supports:i[4],layer:i[5]};if(-1!==p)n[p].references++,n[p].updater(d);else{var f=function(e,n){var t=n.domAPI(n);return t.update(e),function(n){n?(n.css!==e.css||n.media!==e.media||n.sourceMap!==e.sourceMap||n.supports!==e.supports||n.layer!==e.layer)&&t.update(e=n):t.remove()}}(d,o);o.byIndex=s,n.splice(s,0,{identifier:u,updater:f,references:1})}a.push(u)}return a}e.exports=function(e,r){var a=o(e=e||[],r=r||{});return function(e){e=e||[];for(var s=0;s<a.length;s++){var i=t(a[s]);n[i].references--}for(var c=o(e,r),l=0;l<a.length;l++){var u=t(a[l]);0===n[u].references&&(n[u].updater(),n.splice(u,1))}a=c}}},659(e){var n={};e.exports=function(e,t){var o=function(e){if(void 0===n[e]){var t=document.querySelector(e);if(window.HTMLIFrameElement&&t instanceof window.HTMLIFrameElement)try{t=t.contentDocument.head}catch(e){t=null}n[e]=t}return n[e]}(e);if(!o)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");o.appendChild(t)}},540(e){e.exports=function(e){var n=document.createElement("style");return e.setAttributes(n,e.attributes),e.insert(n,e.options),n}},56(e,n,t){e.exports=function(e){var n=t.nc;n&&e.setAttribute("nonce",n)}},825(e){e.exports=function(e){if("u"<typeof document)return{update:function(){},remove:function(){}};var n=e.insertStyleElement(e);return{update:function(t){var o,r,a;o="",t.supports&&(o+="@supports (".concat(t.supports,") {")),t.media&&(o+="@media ".concat(t.media," {")),(r=void 0!==t.layer)&&(o+="@layer".concat(t.layer.length>0?" ".concat(t.layer):""," {")),o+=t.css,r&&(o+="}"),t.media&&(o+="}"),t.supports&&(o+="}"),(a=t.sourceMap)&&"u">typeof btoa&&(o+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(a))))," */")),e.styleTagTransform(o,n,e.options)},remove:function(){var e;null===(e=n).parentNode||e.parentNode.removeChild(e)}}}},113(e){e.exports=function(e,n){if(n.styleSheet)n.styleSheet.cssText=e;else{for(;n.firstChild;)n.removeChild(n.firstChild);n.appendChild(document.createTextNode(e))}}}}]);